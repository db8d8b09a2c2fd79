//! A small evaluator of IAM identity policies, as IAM decides a request: an explicit Deny
//! wins, then any Allow, and anything else is denied. It knows the parts the operator's
//! policy uses and refuses (panics on) the rest, so a policy it cannot judge never passes:
//! Action/NotAction (case-insensitive) and Resource/NotResource (ARN segments, case-sensitive)
//! with `*` and `?`; the String, Arn, Bool and Null condition operators, `...IfExists`, and
//! the `ForAnyValue:`/`ForAllValues:` set prefixes.
//!
//! [`authorizations`] turns one IAM request, as the fault proxy records it (form fields plus
//! the role or provider it acts on), into what IAM checks: the action, the resource ARN and
//! the request context (`aws:RequestTag/*`, `aws:TagKeys`, `aws:ResourceTag/*`,
//! `iam:PermissionsBoundary`, `iam:PolicyARN`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::fault_proxy::{Record, ResourceFacts};

/// What IAM decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Deny matched and this Allow statement (its Sid) did.
    Allowed(String),
    /// This Deny statement (its Sid) matched.
    ExplicitDeny(String),
    /// No statement matched.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// One authorization IAM makes: an action on a resource, in a request context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
    /// Condition keys, lower-cased (IAM's key names are case-insensitive), and their values;
    /// a multi-valued key such as `aws:TagKeys` has several.
    context: BTreeMap<String, Vec<String>>,
}

impl Authorization {
    pub fn new(action: &str, resource: &str) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    /// Adds `value` to the context key `key`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.add(key, value);
        self
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.context
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// The values of `key`; `None` when the request does not carry it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.context
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
            .filter(|values| !values.is_empty())
    }
}

/// IAM's decision on `request` under the identity policy `policy`.
pub fn evaluate(policy: &Value, request: &Authorization) -> Decision {
    let statements = match &policy["Statement"] {
        Value::Array(statements) => statements.iter().collect(),
        statement @ Value::Object(_) => vec![statement],
        other => panic!("policy without statements: {other}"),
    };
    let mut allowed = None;
    for (index, statement) in statements.into_iter().enumerate() {
        if !statement_applies(statement, request) {
            continue;
        }
        let sid = statement["Sid"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{index}"));
        match statement["Effect"].as_str() {
            Some("Deny") => return Decision::ExplicitDeny(sid),
            Some("Allow") => {
                allowed.get_or_insert(sid);
            }
            other => panic!("statement {sid}: Effect {other:?} is neither Allow nor Deny"),
        }
    }
    allowed.map_or(Decision::ImplicitDeny, Decision::Allowed)
}

fn statement_applies(statement: &Value, request: &Authorization) -> bool {
    for unsupported in ["Principal", "NotPrincipal"] {
        assert!(
            statement.get(unsupported).is_none(),
            "an identity policy has no {unsupported}: {statement}"
        );
    }
    let action = |pattern: &str| glob(&pattern.to_lowercase(), &request.action.to_lowercase());
    let resource = |pattern: &str| arn_matches(pattern, &request.resource);
    element_matches(statement, "Action", "NotAction", action)
        && element_matches(statement, "Resource", "NotResource", resource)
        && statement
            .get("Condition")
            .is_none_or(|conditions| conditions_hold(conditions, request))
}

/// Whether `Action` (or `NotAction`, negated) matches; exactly one of the two must be set.
fn element_matches(
    statement: &Value,
    positive: &str,
    negative: &str,
    matches: impl Fn(&str) -> bool,
) -> bool {
    match (statement.get(positive), statement.get(negative)) {
        (Some(patterns), None) => strings(patterns).iter().any(|p| matches(p.as_str())),
        (None, Some(patterns)) => !strings(patterns).iter().any(|p| matches(p.as_str())),
        _ => panic!("a statement needs exactly one of {positive} and {negative}: {statement}"),
    }
}

/// A string or an array of strings (booleans and numbers as IAM reads them: as text).
fn strings(value: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        other => panic!("not a policy value: {other}"),
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// IAM's wildcard match: `*` is any run of characters (none included), `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: whether the pattern so far matches the first j characters of text.
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match c {
                '*' => matched[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matched[j - 1],
                literal => j > 0 && matched[j - 1] && t[j - 1] == literal,
            };
        }
        matched = next;
    }
    matched[t.len()]
}

/// IAM's ARN match (Resource, ArnEquals, ArnLike): `*` alone matches anything; otherwise the
/// six `:`-separated parts match one by one, so a wildcard never crosses into another part.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let pattern_parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let arn_parts: Vec<&str> = arn.splitn(6, ':').collect();
    pattern_parts.len() == 6
        && arn_parts.len() == 6
        && pattern_parts
            .iter()
            .zip(&arn_parts)
            .all(|(p, a)| glob(p, a))
}

/// Every operator, and every key under it, must hold.
fn conditions_hold(conditions: &Value, request: &Authorization) -> bool {
    let operators = conditions
        .as_object()
        .unwrap_or_else(|| panic!("Condition is not an object: {conditions}"));
    operators.iter().all(|(operator, keys)| {
        let keys = keys
            .as_object()
            .unwrap_or_else(|| panic!("{operator} is not an object: {keys}"));
        keys.iter()
            .all(|(key, expected)| condition_holds(operator, key, &strings(expected), request))
    })
}

#[derive(Clone, Copy, PartialEq)]
enum SetOperator {
    None,
    ForAnyValue,
    ForAllValues,
}

fn condition_holds(
    operator: &str,
    key: &str,
    expected: &[String],
    request: &Authorization,
) -> bool {
    let (set, rest) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
        (SetOperator::ForAnyValue, rest)
    } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
        (SetOperator::ForAllValues, rest)
    } else {
        (SetOperator::None, operator)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let values = request.get(key);
    if base == "Null" {
        // "true": the key must be absent; "false": present.
        let want_absent = match expected {
            [one] if one.eq_ignore_ascii_case("true") => true,
            [one] if one.eq_ignore_ascii_case("false") => false,
            other => panic!("Null takes true or false, not {other:?}"),
        };
        return values.is_none() == want_absent;
    }
    let negated = base.contains("Not");
    let positive: fn(&str, &str) -> bool = match base {
        "StringEquals" | "StringNotEquals" => |value, pattern| value == pattern,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
            |value, pattern| value.eq_ignore_ascii_case(pattern)
        }
        "StringLike" | "StringNotLike" => |value, pattern| glob(pattern, value),
        // IAM treats ArnEquals like ArnLike.
        "ArnEquals" | "ArnNotEquals" | "ArnLike" | "ArnNotLike" => {
            |value, pattern| arn_matches(pattern, value)
        }
        "Bool" => |value, pattern| value.eq_ignore_ascii_case(pattern),
        other => panic!("condition operator {other} is not supported by this evaluator"),
    };
    // One request value against the listed ones: any matches, or for a negated operator,
    // none does.
    let value_holds = |value: &String| {
        let any = expected.iter().any(|pattern| positive(value, pattern));
        any != negated
    };
    let Some(values) = values else {
        // A missing key: a set of none satisfies ForAllValues and not ForAnyValue; otherwise
        // only a negated operator or ...IfExists holds.
        return match set {
            SetOperator::ForAllValues => true,
            SetOperator::ForAnyValue => false,
            SetOperator::None => negated || if_exists,
        };
    };
    match set {
        SetOperator::ForAllValues => values.iter().all(value_holds),
        SetOperator::ForAnyValue => values.iter().any(value_holds),
        // Without a set operator on several values: a positive operator needs one match,
        // a negated one that no value matches.
        SetOperator::None if negated => values.iter().all(value_holds),
        SetOperator::None => values.iter().any(value_holds),
    }
}

/// The partition and account requests are evaluated in, for the ARNs IAM builds.
#[derive(Debug, Clone)]
pub struct Account {
    pub partition: String,
    pub id: String,
}

/// What IAM authorizes for one request, as the fault proxy recorded it.
pub fn authorizations_of(record: &Record, account: &Account) -> Vec<Authorization> {
    authorizations(&record.params, record.resource.as_ref(), account)
}

/// What IAM authorizes for one request with these form fields, on this role or provider
/// (`None` when it does not exist yet): usually one authorization; two for a create with
/// tags, which IAM also authorizes as the Tag action; none for `sts:GetCallerIdentity`,
/// which needs no permission.
pub fn authorizations(
    params: &BTreeMap<String, String>,
    resource: Option<&ResourceFacts>,
    account: &Account,
) -> Vec<Authorization> {
    let param = |name: &str| params.get(name).map(String::as_str);
    let action = param("Action").expect("a request without Action");
    let (partition, id) = (&account.partition, &account.id);
    if param("Version") == Some("2011-06-15") {
        return match action {
            "GetCallerIdentity" => Vec::new(),
            "AssumeRole" => vec![Authorization::new(
                "sts:AssumeRole",
                param("RoleArn").expect("AssumeRole without RoleArn"),
            )],
            other => panic!("STS {other} is not mapped to an authorization"),
        };
    }
    assert_eq!(
        param("Version"),
        Some("2010-05-08"),
        "not an IAM request: {params:?}"
    );

    let resource_arn = if let Some(role) = param("RoleName") {
        match (action, resource) {
            ("CreateRole", _) => format!(
                "arn:{partition}:iam::{id}:role{}{role}",
                param("Path").unwrap_or("/")
            ),
            (_, Some(facts)) => facts.arn.clone(),
            // A role that does not exist: IAM can only know its name.
            (_, None) => format!("arn:{partition}:iam::{id}:role/{role}"),
        }
    } else if let Some(arn) = param("OpenIDConnectProviderArn") {
        arn.to_string()
    } else if action == "CreateOpenIDConnectProvider" {
        let url = param("Url").expect("CreateOpenIDConnectProvider without Url");
        let host_path = url.trim_start_matches("https://").trim_end_matches('/');
        format!("arn:{partition}:iam::{id}:oidc-provider/{host_path}")
    } else if let Some(arn) = param("PolicyArn") {
        arn.to_string()
    } else {
        "*".to_string()
    };

    let mut authorization = Authorization::new(&format!("iam:{action}"), &resource_arn);
    let request_tags = members(params, "Tags");
    for (key, value) in &request_tags {
        authorization.add(&format!("aws:RequestTag/{key}"), value);
        authorization.add("aws:TagKeys", key);
    }
    for (key, _) in members(params, "TagKeys") {
        authorization.add("aws:TagKeys", &key);
    }
    if let Some(facts) = resource {
        for (key, value) in &facts.tags {
            authorization.add(&format!("aws:ResourceTag/{key}"), value);
        }
    }
    let boundary = match action {
        // The boundary the request sets.
        "CreateRole" | "PutRolePermissionsBoundary" => param("PermissionsBoundary"),
        // The role's current boundary.
        "PutRolePolicy"
        | "DeleteRolePolicy"
        | "AttachRolePolicy"
        | "DetachRolePolicy"
        | "DeleteRolePermissionsBoundary" => {
            resource.and_then(|facts| facts.permissions_boundary.as_deref())
        }
        _ => None,
    };
    if let Some(boundary) = boundary {
        authorization.add("iam:PermissionsBoundary", boundary);
    }
    if matches!(action, "AttachRolePolicy" | "DetachRolePolicy")
        && let Some(policy) = param("PolicyArn")
    {
        authorization.add("iam:PolicyARN", policy);
    }

    let tag_action = match action {
        "CreateRole" => Some("iam:TagRole"),
        "CreateOpenIDConnectProvider" => Some("iam:TagOpenIDConnectProvider"),
        _ => None,
    };
    let mut all = vec![authorization];
    if let (Some(tag_action), false) = (tag_action, request_tags.is_empty()) {
        let mut tagging = Authorization::new(tag_action, &resource_arn);
        for (key, value) in &request_tags {
            tagging.add(&format!("aws:RequestTag/{key}"), value);
            tagging.add("aws:TagKeys", key);
        }
        all.push(tagging);
    }
    all
}

/// The members of a query-protocol list: `Tags.member.N.Key`/`.Value` as (key, value), or
/// `TagKeys.member.N` as (key, "").
fn members(params: &BTreeMap<String, String>, list: &str) -> Vec<(String, String)> {
    let prefix = format!("{list}.member.");
    let mut found: BTreeMap<u32, (String, String)> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
        let index: u32 = index.parse().expect("a list member index");
        let entry = found.entry(index).or_default();
        match field {
            "Key" | "" => entry.0 = value.clone(),
            "Value" => entry.1 = value.clone(),
            other => panic!("unexpected list field {name} ({other})"),
        }
    }
    found.into_values().collect()
}

/// IAM's decision on a whole request: denied when any of its authorizations is.
pub fn decide(policy: &Value, authorizations: &[Authorization]) -> Decision {
    assert!(!authorizations.is_empty(), "nothing to decide");
    let decisions: Vec<Decision> = authorizations.iter().map(|a| evaluate(policy, a)).collect();
    decisions
        .iter()
        .find(|d| !d.is_allowed())
        .unwrap_or(&decisions[0])
        .clone()
}

/// The form fields of an IAM request (`Version` added).
pub fn iam_request(fields: &[(&str, &str)]) -> BTreeMap<String, String> {
    fields
        .iter()
        .chain(&[("Version", "2010-05-08")])
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A request the operator must never be able to make, and the Deny statement expected to
/// refuse it (`None`: refused because no Allow matches).
#[derive(Debug, Clone)]
pub struct Escalation {
    pub what: &'static str,
    pub params: BTreeMap<String, String>,
    pub resource: Option<ResourceFacts>,
    pub denied_by: Option<&'static str>,
}

/// Where the escalations are tried: the operator's cluster, role path and boundary.
pub struct Confinement<'a> {
    pub account: &'a Account,
    pub cluster: &'a str,
    pub role_path: &'a str,
    pub boundary: &'a str,
}

/// The ways a compromised operator would try to get around its permissions boundary.
pub fn escalations(c: &Confinement<'_>) -> Vec<Escalation> {
    let (partition, id) = (&c.account.partition, &c.account.id);
    let other_boundary = format!("arn:{partition}:iam::{id}:policy/AdministratorAccess-copy");
    let admin = format!("arn:{partition}:iam::aws:policy/AdministratorAccess");
    let name = format!("{}.tenant.escalate", c.cluster);
    let role = |tags: &[(&str, &str)], boundary: Option<&str>| ResourceFacts {
        arn: format!("arn:{partition}:iam::{id}:role{}{name}", c.role_path),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        permissions_boundary: boundary.map(str::to_string),
    };
    let owned = || role(&[("irsa.dev/cluster", c.cluster)], Some(c.boundary));
    let owned_unbounded = || role(&[("irsa.dev/cluster", c.cluster)], None);
    let foreign_bounded = || role(&[("team", "payments")], Some(c.boundary));
    let create = |path: &str, tag: Option<&str>, boundary: Option<&str>| {
        let mut fields = vec![
            ("Action", "CreateRole"),
            ("RoleName", name.as_str()),
            ("Path", path),
            ("AssumeRolePolicyDocument", "{}"),
        ];
        if let Some(cluster) = tag {
            fields.extend([
                ("Tags.member.1.Key", "irsa.dev/cluster"),
                ("Tags.member.1.Value", cluster),
            ]);
        }
        if let Some(boundary) = boundary {
            fields.push(("PermissionsBoundary", boundary));
        }
        iam_request(&fields)
    };
    let on_role = |action: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![("Action", action), ("RoleName", name.as_str())];
        fields.extend_from_slice(extra);
        iam_request(&fields)
    };
    let put_policy = on_role(
        "PutRolePolicy",
        &[
            ("PolicyName", "irsa-operator"),
            (
                "PolicyDocument",
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            ),
        ],
    );
    let attach_admin = on_role("AttachRolePolicy", &[("PolicyArn", admin.as_str())]);
    let on_boundary = |action: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![("Action", action), ("PolicyArn", c.boundary)];
        fields.extend_from_slice(extra);
        iam_request(&fields)
    };
    let escalation = |what, params, resource, denied_by| Escalation {
        what,
        params,
        resource,
        denied_by,
    };
    vec![
        escalation(
            "CreateRole without a permissions boundary",
            create(c.role_path, Some(c.cluster), None),
            None,
            None,
        ),
        escalation(
            "CreateRole with another permissions boundary",
            create(c.role_path, Some(c.cluster), Some(other_boundary.as_str())),
            None,
            None,
        ),
        escalation(
            "CreateRole outside the role path",
            create("/admin/", Some(c.cluster), Some(c.boundary)),
            None,
            None,
        ),
        escalation(
            "CreateRole without the cluster tag",
            create(c.role_path, None, Some(c.boundary)),
            None,
            None,
        ),
        escalation(
            "CreateRole tagged for another cluster",
            create(c.role_path, Some("other-cluster"), Some(c.boundary)),
            None,
            None,
        ),
        escalation(
            "PutRolePermissionsBoundary to another policy",
            on_role(
                "PutRolePermissionsBoundary",
                &[("PermissionsBoundary", other_boundary.as_str())],
            ),
            Some(owned()),
            None,
        ),
        escalation(
            "DeleteRolePermissionsBoundary",
            on_role("DeleteRolePermissionsBoundary", &[]),
            Some(owned()),
            Some("NeverRemoveAPermissionsBoundary"),
        ),
        escalation(
            "CreatePolicyVersion of the boundary",
            on_boundary(
                "CreatePolicyVersion",
                &[
                    (
                        "PolicyDocument",
                        r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                    ),
                    ("SetAsDefault", "true"),
                ],
            ),
            None,
            Some("NeverChangeTheBoundaryPolicy"),
        ),
        escalation(
            "SetDefaultPolicyVersion of the boundary",
            on_boundary("SetDefaultPolicyVersion", &[("VersionId", "v1")]),
            None,
            Some("NeverChangeTheBoundaryPolicy"),
        ),
        escalation(
            "DeletePolicyVersion of the boundary",
            on_boundary("DeletePolicyVersion", &[("VersionId", "v2")]),
            None,
            Some("NeverChangeTheBoundaryPolicy"),
        ),
        escalation(
            "DeletePolicy of the boundary",
            on_boundary("DeletePolicy", &[]),
            None,
            Some("NeverChangeTheBoundaryPolicy"),
        ),
        escalation(
            "PutRolePolicy on an owned role without the boundary",
            put_policy.clone(),
            Some(owned_unbounded()),
            None,
        ),
        escalation(
            "PutRolePolicy on a role with the boundary but without the cluster tag",
            put_policy,
            Some(foreign_bounded()),
            None,
        ),
        escalation(
            "AttachRolePolicy on an owned role without the boundary",
            attach_admin.clone(),
            Some(owned_unbounded()),
            None,
        ),
        escalation(
            "AttachRolePolicy on an owned role with another boundary",
            attach_admin.clone(),
            Some(role(
                &[("irsa.dev/cluster", c.cluster)],
                Some(other_boundary.as_str()),
            )),
            None,
        ),
        escalation(
            "AttachRolePolicy on a role with the boundary but without the cluster tag",
            attach_admin,
            Some(foreign_bounded()),
            None,
        ),
        escalation(
            "UntagRole of irsa.dev/cluster",
            on_role("UntagRole", &[("TagKeys.member.1", "irsa.dev/cluster")]),
            Some(owned()),
            Some("NeverStripOwnershipTags"),
        ),
        escalation(
            "UntagRole of irsa.dev/uid beside a user tag",
            on_role(
                "UntagRole",
                &[
                    ("TagKeys.member.1", "team"),
                    ("TagKeys.member.2", "irsa.dev/uid"),
                ],
            ),
            Some(owned()),
            Some("NeverStripOwnershipTags"),
        ),
    ]
}
