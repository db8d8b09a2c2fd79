//! The operator's IAM policy (`irsa-operator iam-policy`), judged by the IAM evaluator of
//! `support/iam_eval.rs`, without a test bed: the evaluator itself (it must be able to say
//! no), the escalations a boundary is there to stop, for several role paths and partitions,
//! `existing` mode without provider writes, and config/iam/operator-policy.json as the
//! committed rendering (bounded, as released). That every request the operator really sends is
//! allowed is shown on the test bed, by tests/iam_policy_e2e.rs.

mod support;

use std::collections::BTreeMap;

use irsa_api::ProviderMode;
use irsa_core::{
    iam_policy::{Partition, PolicyTarget, operator_policy},
    policy::validate_identity_policy,
};
use serde_json::{Value, json};
use support::{
    fault_proxy::ResourceFacts,
    iam_eval::{
        Account, Authorization, Confinement, Decision, arn_matches, authorizations, decide,
        escalations, evaluate, glob, iam_request,
    },
};

const COMMITTED: &str = include_str!("../config/iam/operator-policy.json");
const BOUNDARY_DOC: &str = include_str!("../config/iam/permissions-boundary.json");

fn allowed(sid: &str) -> Decision {
    Decision::Allowed(sid.into())
}

fn denied(sid: &str) -> Decision {
    Decision::ExplicitDeny(sid.into())
}

#[test]
fn wildcards_are_iams() {
    assert!(glob("iam:*", "iam:CreateRole"));
    assert!(glob("iam:?etRole", "iam:GetRole"));
    assert!(!glob("iam:?etRole", "iam:GetRoles"));
    assert!(glob("*", ""));
    assert!(glob("a*b*c", "abxbc"));
    assert!(!glob("a*b*c", "abxbd"));
    assert!(glob("irsa.dev/*", "irsa.dev/cluster"));
    assert!(!glob("irsa.dev/*", "team"));
    assert!(arn_matches(
        "arn:aws:iam::*:role/irsa/prod/*",
        "arn:aws:iam::1:role/irsa/prod/x"
    ));
    assert!(!arn_matches(
        "arn:aws:iam::*:role/irsa/prod/*",
        "arn:aws:iam::1:role/other/x"
    ));
    assert!(!arn_matches(
        "arn:aws:iam::*:role/*",
        "arn:aws-cn:iam::1:role/x"
    ));
    // A wildcard stays in its part of the ARN.
    assert!(!arn_matches(
        "arn:aws:iam:*:role/*",
        "arn:aws:iam::1:role/x"
    ));
    assert!(arn_matches("*", "arn:aws:iam::1:role/x"));
    assert!(!arn_matches("arn:aws:iam::*:role/*", "*"));
    // Resources are case-sensitive.
    assert!(!arn_matches(
        "arn:aws:iam::*:role/X",
        "arn:aws:iam::1:role/x"
    ));
}

#[test]
fn the_evaluator_denies_by_default_and_deny_wins() {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "IAM:get*", "Resource": "arn:aws:iam::*:role/*"},
        {"Sid": "D", "Effect": "Deny", "Action": "iam:GetRolePolicy", "Resource": "*"},
        {"Sid": "N", "Effect": "Allow", "NotAction": ["iam:*"], "NotResource": "arn:aws:s3:::secret"},
    ]});
    let get = |action: &str, arn: &str| evaluate(&policy, &Authorization::new(action, arn));
    assert_eq!(get("iam:GetRole", "arn:aws:iam::1:role/x"), allowed("A"));
    // Actions are case-insensitive.
    assert_eq!(get("iam:getrole", "arn:aws:iam::1:role/x"), allowed("A"));
    assert_eq!(
        get("iam:GetRolePolicy", "arn:aws:iam::1:role/x"),
        denied("D")
    );
    assert_eq!(
        get("iam:GetUser", "arn:aws:iam::1:user/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        get("iam:DeleteRole", "arn:aws:iam::1:role/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(get("s3:GetObject", "arn:aws:s3:::public"), allowed("N"));
    assert_eq!(
        get("s3:GetObject", "arn:aws:s3:::secret"),
        Decision::ImplicitDeny
    );
    let single = json!({"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}});
    assert!(evaluate(&single, &Authorization::new("s3:x", "y")).is_allowed());
}

fn with_condition(condition: Value) -> Value {
    json!({"Statement": [{"Sid": "C", "Effect": "Allow", "Action": "iam:TagRole",
        "Resource": "*", "Condition": condition}]})
}

fn tag_role(context: &[(&str, &str)]) -> Authorization {
    context.iter().fold(
        Authorization::new("iam:TagRole", "arn:aws:iam::1:role/x"),
        |a, (k, v)| a.with(k, v),
    )
}

/// A condition, the request context it is evaluated in, and whether it holds.
type ConditionCase<'a> = (Value, &'a [(&'a str, &'a str)], bool);

#[test]
fn conditions_are_iams() {
    let cases: &[ConditionCase] = &[
        // Key names are case-insensitive, values (for StringEquals) are not.
        (
            json!({"StringEquals": {"aws:RequestTag/team": "a"}}),
            &[("AWS:requesttag/TEAM", "a")],
            true,
        ),
        (
            json!({"StringEquals": {"aws:RequestTag/team": "a"}}),
            &[("aws:RequestTag/team", "A")],
            false,
        ),
        (
            json!({"StringEqualsIgnoreCase": {"aws:RequestTag/team": "a"}}),
            &[("aws:RequestTag/team", "A")],
            true,
        ),
        // A missing key makes a positive operator false, a negated one true.
        (
            json!({"StringEquals": {"aws:RequestTag/team": "a"}}),
            &[],
            false,
        ),
        (
            json!({"StringNotEquals": {"aws:RequestTag/team": "a"}}),
            &[],
            true,
        ),
        (
            json!({"StringNotEquals": {"aws:RequestTag/team": "a"}}),
            &[("aws:RequestTag/team", "a")],
            false,
        ),
        (
            json!({"StringEqualsIfExists": {"aws:RequestTag/team": "a"}}),
            &[],
            true,
        ),
        (
            json!({"StringEqualsIfExists": {"aws:RequestTag/team": "a"}}),
            &[("aws:RequestTag/team", "b")],
            false,
        ),
        // `*` is literal in StringEquals, a wildcard in StringLike.
        (
            json!({"StringEquals": {"aws:RequestTag/team": "*"}}),
            &[("aws:RequestTag/team", "a")],
            false,
        ),
        (
            json!({"StringLike": {"aws:RequestTag/team": "pay*"}}),
            &[("aws:RequestTag/team", "payments")],
            true,
        ),
        (
            json!({"StringLike": {"aws:RequestTag/team": ["x", "p?y*"]}}),
            &[("aws:RequestTag/team", "payments")],
            true,
        ),
        (
            json!({"StringNotLike": {"aws:RequestTag/team": "pay*"}}),
            &[("aws:RequestTag/team", "payments")],
            false,
        ),
        // Several keys and operators: all must hold.
        (
            json!({"StringEquals": {"a": "1", "b": "2"}}),
            &[("a", "1")],
            false,
        ),
        (
            json!({"StringEquals": {"a": "1"}, "StringLike": {"b": "2*"}}),
            &[("a", "1"), ("b", "23")],
            true,
        ),
        (
            json!({"ArnEquals": {"iam:PermissionsBoundary": "arn:aws:iam::1:policy/b"}}),
            &[("iam:PermissionsBoundary", "arn:aws:iam::1:policy/b")],
            true,
        ),
        (
            json!({"ArnLike": {"iam:PermissionsBoundary": "arn:aws:iam::*:policy/b*"}}),
            &[("iam:PermissionsBoundary", "arn:aws:iam::1:policy/bx")],
            true,
        ),
        (
            json!({"ArnLike": {"iam:PermissionsBoundary": "arn:aws:iam::*:policy/b"}}),
            &[("iam:PermissionsBoundary", "arn:aws:iam::1:policy/c")],
            false,
        ),
        (
            json!({"ArnNotEquals": {"iam:PermissionsBoundary": "arn:aws:iam::1:policy/b"}}),
            &[("iam:PermissionsBoundary", "arn:aws:iam::1:policy/c")],
            true,
        ),
        (
            json!({"Null": {"iam:PermissionsBoundary": "true"}}),
            &[],
            true,
        ),
        (
            json!({"Null": {"iam:PermissionsBoundary": "true"}}),
            &[("iam:PermissionsBoundary", "x")],
            false,
        ),
        (
            json!({"Null": {"iam:PermissionsBoundary": "false"}}),
            &[("iam:PermissionsBoundary", "x")],
            true,
        ),
        (
            json!({"Bool": {"aws:SecureTransport": true}}),
            &[("aws:SecureTransport", "true")],
            true,
        ),
        // Multi-valued keys.
        (
            json!({"ForAnyValue:StringLike": {"aws:TagKeys": "irsa.dev/*"}}),
            &[("aws:TagKeys", "team"), ("aws:TagKeys", "irsa.dev/uid")],
            true,
        ),
        (
            json!({"ForAnyValue:StringLike": {"aws:TagKeys": "irsa.dev/*"}}),
            &[("aws:TagKeys", "team")],
            false,
        ),
        (
            json!({"ForAnyValue:StringLike": {"aws:TagKeys": "irsa.dev/*"}}),
            &[],
            false,
        ),
        (
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}),
            &[("aws:TagKeys", "team"), ("aws:TagKeys", "env")],
            true,
        ),
        (
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}),
            &[("aws:TagKeys", "team"), ("aws:TagKeys", "owner")],
            false,
        ),
        // ForAllValues holds on an empty set: the classic trap.
        (
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}),
            &[],
            true,
        ),
        (
            json!({"ForAllValues:StringNotLike": {"aws:TagKeys": "irsa.dev/*"}}),
            &[("aws:TagKeys", "team"), ("aws:TagKeys", "irsa.dev/x")],
            false,
        ),
        (
            json!({"ForAnyValue:StringNotEquals": {"aws:TagKeys": "team"}}),
            &[("aws:TagKeys", "team"), ("aws:TagKeys", "env")],
            true,
        ),
    ];
    for (condition, context, expected) in cases {
        let decision = evaluate(&with_condition(condition.clone()), &tag_role(context));
        assert_eq!(
            decision.is_allowed(),
            *expected,
            "{condition} with {context:?}"
        );
    }
}

#[test]
#[should_panic(expected = "not supported")]
fn an_unknown_condition_operator_is_refused_not_ignored() {
    evaluate(
        &with_condition(json!({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})),
        &tag_role(&[]),
    );
}

fn account() -> Account {
    Account {
        partition: "aws".into(),
        id: "111122223333".into(),
    }
}

#[test]
fn requests_map_to_iams_authorizations() {
    let create = iam_request(&[
        ("Action", "CreateRole"),
        ("RoleName", "prod.shop.app"),
        ("Path", "/irsa/prod/"),
        ("PermissionsBoundary", "arn:aws:iam::111122223333:policy/b"),
        ("Tags.member.1.Key", "irsa.dev/cluster"),
        ("Tags.member.1.Value", "prod"),
        ("Tags.member.2.Key", "team"),
        ("Tags.member.2.Value", "payments"),
    ]);
    let arn = "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.app";
    let auths = authorizations(&create, None, &account());
    assert_eq!(
        auths.len(),
        2,
        "CreateRole with tags is also TagRole: {auths:?}"
    );
    assert_eq!(
        auths[0],
        Authorization::new("iam:CreateRole", arn)
            .with("aws:RequestTag/irsa.dev/cluster", "prod")
            .with("aws:TagKeys", "irsa.dev/cluster")
            .with("aws:RequestTag/team", "payments")
            .with("aws:TagKeys", "team")
            .with(
                "iam:PermissionsBoundary",
                "arn:aws:iam::111122223333:policy/b"
            )
    );
    assert_eq!(auths[1].action, "iam:TagRole");
    assert_eq!(auths[1].get("iam:PermissionsBoundary"), None);
    assert_eq!(auths[1].get("aws:TagKeys").unwrap().len(), 2);

    let facts = ResourceFacts {
        arn: arn.into(),
        tags: BTreeMap::from([("irsa.dev/cluster".into(), "prod".into())]),
        permissions_boundary: Some("arn:aws:iam::111122223333:policy/current".into()),
    };
    let put = iam_request(&[("Action", "PutRolePolicy"), ("RoleName", "prod.shop.app")]);
    let auths = authorizations(&put, Some(&facts), &account());
    assert_eq!(
        auths,
        [Authorization::new("iam:PutRolePolicy", arn)
            .with("aws:ResourceTag/irsa.dev/cluster", "prod")
            .with(
                "iam:PermissionsBoundary",
                "arn:aws:iam::111122223333:policy/current"
            )]
    );
    let untag = iam_request(&[
        ("Action", "UntagRole"),
        ("RoleName", "prod.shop.app"),
        ("TagKeys.member.1", "a"),
        ("TagKeys.member.2", "b"),
    ]);
    let auths = authorizations(&untag, Some(&facts), &account());
    assert_eq!(
        auths[0].get("aws:TagKeys"),
        Some(&["a".to_string(), "b".into()][..])
    );
    assert_eq!(auths[0].get("iam:PermissionsBoundary"), None);
    let provider = iam_request(&[
        ("Action", "CreateOpenIDConnectProvider"),
        ("Url", "https://oidc.example.com/id/X"),
        ("Tags.member.1.Key", "irsa.dev/cluster"),
        ("Tags.member.1.Value", "prod"),
    ]);
    let auths = authorizations(&provider, None, &account());
    assert_eq!(
        auths[0].resource,
        "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/X"
    );
    assert_eq!(auths[1].action, "iam:TagOpenIDConnectProvider");
    let listing = iam_request(&[("Action", "GetAccountAuthorizationDetails")]);
    assert_eq!(authorizations(&listing, None, &account())[0].resource, "*");
    let identity = BTreeMap::from([
        ("Action".to_string(), "GetCallerIdentity".to_string()),
        ("Version".into(), "2011-06-15".into()),
    ]);
    assert!(authorizations(&identity, None, &account()).is_empty());
}

fn target(
    role_path: Option<&str>,
    partition: Partition,
    mode: ProviderMode,
    boundary: Option<&str>,
) -> PolicyTarget {
    PolicyTarget {
        cluster_name: "prod".into(),
        role_path: role_path.map(str::to_string),
        partition,
        provider_mode: mode,
        permissions_boundary: boundary.map(str::to_string),
    }
}

#[test]
fn escalations_are_denied_for_every_path_and_partition() {
    let cases = [
        (None, Partition::Aws, ProviderMode::Manage),
        (
            Some("/teams/payments/"),
            Partition::AwsUsGov,
            ProviderMode::Existing,
        ),
        (Some("/a/b/c/"), Partition::AwsCn, ProviderMode::Manage),
    ];
    for (role_path, partition, mode) in cases {
        let account = Account {
            partition: partition.as_str().into(),
            id: "111122223333".into(),
        };
        let boundary = format!(
            "arn:{}:iam::111122223333:policy/irsa-boundary",
            partition.as_str()
        );
        let policy = operator_policy(&target(role_path, partition, mode, Some(&boundary))).unwrap();
        validate_identity_policy(&policy).expect("the rendered policy is itself valid");
        let role_path = role_path.unwrap_or("/irsa/prod/");
        let confinement = Confinement {
            account: &account,
            cluster: "prod",
            role_path,
            boundary: &boundary,
        };
        let all = escalations(&confinement);
        assert!(all.len() >= 15, "{all:#?}");
        for escalation in all {
            let decision = decide(
                &policy,
                &authorizations(&escalation.params, escalation.resource.as_ref(), &account),
            );
            let expected = escalation.denied_by.map_or(Decision::ImplicitDeny, |sid| {
                Decision::ExplicitDeny(sid.into())
            });
            assert_eq!(
                decision, expected,
                "{}: {partition:?} {role_path}",
                escalation.what
            );
        }
        // Without the boundary, the same policy lets most of them through: the boundary
        // is what stops them.
        let unbounded = operator_policy(&target(Some(role_path), partition, mode, None)).unwrap();
        let let_through = escalations(&confinement)
            .iter()
            .filter(|e| {
                decide(
                    &unbounded,
                    &authorizations(&e.params, e.resource.as_ref(), &account),
                )
                .is_allowed()
            })
            .count();
        assert!(let_through >= 5, "{let_through}");
    }
}

/// What the operator's provider writes look like, on the provider it created.
fn provider_writes(account: &Account) -> Vec<(BTreeMap<String, String>, Option<ResourceFacts>)> {
    let arn = format!(
        "arn:{}:iam::{}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
        account.partition, account.id
    );
    let tagged = ResourceFacts {
        arn: arn.clone(),
        tags: BTreeMap::from([
            ("irsa.dev/cluster".into(), "prod".into()),
            ("irsa.dev/managed-by".into(), "irsa-operator".into()),
        ]),
        permissions_boundary: None,
    };
    let create = iam_request(&[
        ("Action", "CreateOpenIDConnectProvider"),
        ("Url", "https://oidc.eks.us-east-1.amazonaws.com/id/ABC"),
        ("ClientIDList.member.1", "sts.amazonaws.com"),
        (
            "ThumbprintList.member.1",
            "9e99a48a9960b14926bb7f3b02e22da2b0ab7280",
        ),
        ("Tags.member.1.Key", "irsa.dev/cluster"),
        ("Tags.member.1.Value", "prod"),
        ("Tags.member.2.Key", "irsa.dev/managed-by"),
        ("Tags.member.2.Value", "irsa-operator"),
    ]);
    let on_provider = |action: &str, field: &str| {
        iam_request(&[
            ("Action", action),
            ("OpenIDConnectProviderArn", arn.as_str()),
            (field, "x"),
        ])
    };
    vec![
        (create, None),
        (
            on_provider(
                "UpdateOpenIDConnectProviderThumbprint",
                "ThumbprintList.member.1",
            ),
            Some(tagged.clone()),
        ),
        (
            on_provider("AddClientIDToOpenIDConnectProvider", "ClientID"),
            Some(tagged.clone()),
        ),
        (
            on_provider("RemoveClientIDFromOpenIDConnectProvider", "ClientID"),
            Some(tagged),
        ),
    ]
}

#[test]
fn only_manage_mode_writes_the_provider_and_only_the_one_it_created() {
    for partition in [Partition::Aws, Partition::AwsUsGov, Partition::AwsCn] {
        let account = Account {
            partition: partition.as_str().into(),
            id: "111122223333".into(),
        };
        let boundary = format!("arn:{}:iam::111122223333:policy/b", partition.as_str());
        for boundary in [None, Some(boundary.as_str())] {
            let manage =
                operator_policy(&target(None, partition, ProviderMode::Manage, boundary)).unwrap();
            let existing =
                operator_policy(&target(None, partition, ProviderMode::Existing, boundary))
                    .unwrap();
            for (params, resource) in provider_writes(&account) {
                let auths = authorizations(&params, resource.as_ref(), &account);
                assert!(decide(&manage, &auths).is_allowed(), "manage: {params:?}");
                assert_eq!(
                    decide(&existing, &auths),
                    Decision::ImplicitDeny,
                    "existing: {params:?}"
                );
                // A provider someone else made (EKS, eksctl) is never changed.
                if let Some(mut foreign) = resource {
                    foreign.tags.clear();
                    let auths = authorizations(&params, Some(&foreign), &account);
                    assert_eq!(
                        decide(&manage, &auths),
                        Decision::ImplicitDeny,
                        "foreign: {params:?}"
                    );
                }
            }
        }
    }
}

/// The committed policy is the released one: bounded, with the placeholders CLUSTER_NAME and
/// ACCOUNT_ID (scripts/operator-iam-policy). Filled in, it is exactly what `iam-policy` renders
/// for that cluster and boundary, and the placeholder is nowhere but in the boundary's ARN.
#[test]
fn committed_policy_is_the_rendered_bounded_one() {
    const PLACEHOLDER: &str = "arn:aws:iam::ACCOUNT_ID:policy/irsa-boundary";
    const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/irsa-boundary";
    assert_eq!(
        COMMITTED.matches("ACCOUNT_ID").count(),
        COMMITTED.matches(PLACEHOLDER).count(),
        "ACCOUNT_ID outside the boundary's ARN"
    );
    assert!(
        COMMITTED.contains(&format!("\"iam:PermissionsBoundary\": \"{PLACEHOLDER}\"")),
        "config/iam/operator-policy.json has no boundary condition"
    );
    let rendered = operator_policy(&PolicyTarget {
        cluster_name: "CLUSTER_NAME".into(),
        ..target(None, Partition::Aws, ProviderMode::Manage, Some(BOUNDARY))
    })
    .unwrap();
    let filled: Value =
        serde_json::from_str(&COMMITTED.replace(PLACEHOLDER, BOUNDARY)).expect("policy is JSON");
    assert_eq!(
        filled, rendered,
        "config/iam/operator-policy.json is stale: run `scripts/generate-crds`"
    );
}

/// The starting boundary policy the docs show is a valid identity policy, grants no IAM
/// write, and is what docs/operator-iam-policy.md quotes.
#[test]
fn the_starting_boundary_policy_is_valid_and_grants_no_iam_write() {
    let boundary: Value = serde_json::from_str(BOUNDARY_DOC).expect("boundary is JSON");
    validate_identity_policy(&boundary).expect("a valid policy");
    for action in [
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:PassRole",
        "iam:CreatePolicyVersion",
        "organizations:LeaveOrganization",
        "sts:AssumeRole",
    ] {
        let decision = evaluate(&boundary, &Authorization::new(action, "*"));
        assert!(
            !decision.is_allowed(),
            "the boundary lets {action} through: {decision:?}"
        );
    }
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operator-iam-policy.md"),
    )
    .expect("docs/operator-iam-policy.md");
    let quoted = doc
        .split("```json")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter_map(|block| serde_json::from_str::<Value>(block).ok())
        .any(|block| block == boundary);
    assert!(
        quoted,
        "docs/operator-iam-policy.md does not quote config/iam/permissions-boundary.json"
    );
}
