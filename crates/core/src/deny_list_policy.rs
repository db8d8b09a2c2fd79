//! Pure: the ValidatingAdmissionPolicy that makes `kubectl apply` (and `--dry-run=server`)
//! refuse what CEL can check of the built-in guardrail: the same lists as
//! `crate::guardrail`, turned into CEL, so a rule lives in one place. Guardrail objects
//! and spec validation beyond these stay with the operator (status `PolicyNotAllowed`).
//! The output is committed under config/admission/; a unit test keeps it in step.

use serde_json::{Value, json};

use crate::{
    guardrail::BUILT_IN_DENIED_ACTIONS, guardrail::BUILT_IN_DENIED_GRANTS,
    guardrail::BUILT_IN_DENIED_MANAGED_POLICIES,
};

pub const POLICY_NAME: &str = "podiamroles.irsa.dev";

/// Characters with a meaning in RE2 that may appear in an action or ARN.
const REGEX_SPECIALS: [char; 12] = ['\\', '.', '+', '(', ')', '[', ']', '{', '}', '^', '$', '|'];

/// A glob (`*` any run, `?` one character), matched case-insensitively like
/// `guardrail::glob_match`, as an anchored RE2 pattern over lowercase text.
fn glob_regex(glob: &str) -> String {
    let mut regex = String::from("^");
    for c in glob.to_lowercase().chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c if REGEX_SPECIALS.contains(&c) => {
                regex.push('\\');
                regex.push(c);
            }
            c => regex.push(c),
        }
    }
    regex.push('$');
    regex
}

/// The same conversion in CEL, for an action pattern only known at admission.
fn cel_glob_regex(text: &str) -> String {
    let mut expression = format!("{text}.lowerAscii()");
    for c in REGEX_SPECIALS {
        let c = if c == '\\' {
            "\\\\".to_string()
        } else {
            c.to_string()
        };
        expression.push_str(&format!(".replace('{c}', '\\\\{c}')"));
    }
    format!("'^' + {expression}.replace('*', '.*').replace('?', '.') + '$'")
}

fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn cel_list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// CEL: a string or list field as a list.
fn as_list(field: &str) -> String {
    format!("(type({field}) == list ? {field} : [{field}])")
}

/// CEL: whether action pattern `a` and the glob `glob` can name the same action, like
/// `guardrail::overlaps`, given `a`'s lowercase text and its regex.
fn overlaps(text: &str, regex: &str, glob: &str) -> String {
    format!(
        "{}.matches({regex}) || {text}.matches({})",
        cel_string(&glob.to_lowercase()),
        cel_string(&glob_regex(glob))
    )
}

fn validation(expression: String, message: &str) -> Value {
    json!({"expression": expression, "message": message, "reason": "Invalid"})
}

/// The policy and its binding (every namespace) as YAML documents.
pub fn manifests() -> Vec<Value> {
    let statements = "object.spec.policy.Statement";
    let allows = format!(
        "has(object.spec.policy) && has({statements}) ? {}.filter(s, has(s.Effect) && s.Effect == 'Allow') : []",
        as_list(statements)
    );
    let actions = format!(
        "variables.allows.map(s, has(s.Action) ? {} : [])",
        as_list("s.Action")
    );
    // Each action pattern once as lowercase text and as a regex, for the checks below.
    let patterns = format!(
        "variables.actions.map(l, l.map(a, {{'text': string(a).lowerAscii(), 'regex': {}}}))",
        cel_glob_regex("string(a)")
    );
    let grant_check = BUILT_IN_DENIED_GRANTS
        .iter()
        .map(|g| format!("{}.matches(p.regex)", cel_string(g)))
        .collect::<Vec<_>>()
        .join(" || ");
    let denied_check = BUILT_IN_DENIED_ACTIONS
        .iter()
        .map(|d| format!("({})", overlaps("p.text", "p.regex", d)))
        .collect::<Vec<_>>()
        .join(" || ");
    let managed = cel_list(
        BUILT_IN_DENIED_MANAGED_POLICIES
            .iter()
            .map(|p| cel_string(&glob_regex(p))),
    );
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["irsa.dev"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["podiamroles"],
            }]},
            "variables": [
                {"name": "allows", "expression": allows},
                {"name": "actions", "expression": actions},
                {"name": "patterns", "expression": patterns},
            ],
            "validations": [
                validation(
                    "!variables.allows.exists(s, has(s.NotAction))".into(),
                    "spec.policy: Allow with NotAction grants every other action, including those the built-in guardrail denies; list the actions",
                ),
                validation(
                    format!("!variables.patterns.exists(l, l.exists(p, {grant_check}))"),
                    &format!("spec.policy: an Allow statement grants {}, denied by the built-in guardrail", BUILT_IN_DENIED_GRANTS.join(" or ")),
                ),
                validation(
                    format!("!variables.patterns.exists(l, l.exists(p, {denied_check}))"),
                    &format!("spec.policy: an Allow statement reaches an action denied by the built-in guardrail ({})", BUILT_IN_DENIED_ACTIONS.join(", ")),
                ),
                validation(
                    format!(
                        "!variables.allows.exists(s, has(s.Action) && has(s.Resource) && {}.exists(r, r == '*') && {}.exists(a, {}))",
                        as_list("s.Resource"),
                        as_list("s.Action"),
                        overlaps("string(a).lowerAscii()", &cel_glob_regex("string(a)"), "sts:AssumeRole")
                    ),
                    "spec.policy: an Allow statement may assume any role (sts:AssumeRole on Resource *), denied by the built-in guardrail",
                ),
                validation(
                    format!("!has(object.spec.managedPolicyArns) || !object.spec.managedPolicyArns.exists(arn, {managed}.exists(p, arn.lowerAscii().matches(p)))"),
                    &format!("spec.managedPolicyArns: {} may not be attached (built-in guardrail)", BUILT_IN_DENIED_MANAGED_POLICIES.join(", ")),
                ),
            ],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    });
    vec![policy, binding]
}

/// The committed file under config/admission/.
pub fn yaml() -> String {
    manifests()
        .iter()
        .map(|m| serde_yaml::to_string(m).expect("JSON values serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrail::glob_match;

    #[test]
    fn committed_policy_matches_the_guardrail_lists() {
        // The repository root, two levels above this crate.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/admission/validating-admission-policy.yaml");
        if std::env::var("IRSA_UPDATE_TESTDATA").is_ok_and(|v| v == "1") {
            std::fs::write(&path, yaml()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == yaml(),
            "{} is stale: run `IRSA_UPDATE_TESTDATA=1 cargo test -p irsa-core deny_list_policy`",
            path.display()
        );
    }

    #[test]
    fn glob_regexes_escape_and_anchor() {
        assert_eq!(glob_regex("iam:Pass*"), "^iam:pass.*$");
        assert_eq!(
            glob_regex("arn:aws*:iam::aws:policy/A.B?"),
            "^arn:aws.*:iam::aws:policy/a\\.b.$"
        );
        // The reference matcher agrees on the cases the regex must get right.
        assert!(glob_match("iam:Pass*", "IAM:PassRole"));
    }

    #[test]
    fn cel_strings_escape_quotes_and_backslashes() {
        assert_eq!(cel_string("a'b\\c"), "'a\\'b\\\\c'");
        assert!(
            cel_glob_regex("a").starts_with("'^' + a.lowerAscii().replace('\\\\', '\\\\\\\\')")
        );
    }
}
