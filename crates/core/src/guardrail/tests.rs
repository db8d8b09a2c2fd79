use super::{grants::overlaps, *};
use crate::testing::{guardrail_context, spec};
use irsa_api::PodIamRoleGuardrailSpec;
use proptest::prelude::*;
use serde_json::{Value, json};

const DENY: Baseline = Baseline {
    default_deny: true,
    boundary: None,
};
const LEGACY: Baseline = Baseline {
    default_deny: false,
    boundary: None,
};

fn decided(
    spec: &PodIamRoleSpec,
    rules: &[Rule<'_>],
    baseline: &Baseline,
) -> Result<Enforced, String> {
    evaluate(spec, rules, &guardrail_context(baseline))
}

/// A guardrail that grants everything of every kind, as `*` must be written to.
fn everything() -> PodIamRoleGuardrailSpec {
    let all = || Some(vec!["*".to_string()]);
    PodIamRoleGuardrailSpec {
        allowed_actions: all(),
        allowed_resources: all(),
        allowed_managed_policy_arns: all(),
        allowed_chain_targets: all(),
        allowed_trusted_role_arns: all(),
        allowed_audiences: all(),
        ..Default::default()
    }
}

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
    decided(spec, rules, &DENY).unwrap_err()
}

fn ok(spec: &PodIamRoleSpec, rules: &[Rule<'_>]) -> bool {
    decided(spec, rules, &DENY).is_ok()
}

fn rule<'a>(name: &'a str, spec: &'a PodIamRoleGuardrailSpec) -> Rule<'a> {
    Rule { name, spec }
}

/// The payments table, and nothing else of any kind.
fn payments_grant() -> PodIamRoleGuardrailSpec {
    PodIamRoleGuardrailSpec {
        allowed_actions: Some(vec!["dynamodb:*".into()]),
        allowed_resources: Some(vec![
            "arn:aws:dynamodb:us-east-1:111122223333:table/payments".into(),
        ]),
        ..Default::default()
    }
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
fn a_namespace_no_guardrail_selects_gets_nothing() {
    let message = err(&spec(), &[]);
    assert!(
        message.starts_with(
            "no PodIamRoleGuardrail selects namespace `shop`, so nothing is granted there"
        ),
        "{message}"
    );
    assert!(
        message.contains("kubernetes.io/metadata.name: shop"),
        "says how: {message}"
    );
    let bare = PodIamRoleSpec {
        policy: None,
        ..spec()
    };
    assert!(
        err(&bare, &[]).starts_with("no PodIamRoleGuardrail"),
        "even a role with no permission"
    );
    assert_eq!(
        decided(&spec(), &[], &LEGACY),
        Ok(Enforced::default()),
        "--allow-without-guardrail restores the old behaviour"
    );
}

#[test]
fn each_kind_of_grant_is_explicit() {
    let s3 = PodIamRoleGuardrailSpec {
        allowed_actions: Some(vec!["s3:GetObject".into()]),
        allowed_resources: Some(vec!["arn:aws:s3:::reports/*".into()]),
        ..Default::default()
    };
    let rules = [rule("reports", &s3)];
    let exact = allow(json!("s3:GetObject"), json!("arn:aws:s3:::reports/*"));
    assert!(ok(&exact, &rules), "exactly the grant");
    let cases = [
        (
            allow(json!("s3:PutObject"), json!("arn:aws:s3:::reports/*")),
            "Action `s3:PutObject` is not within guardrail reports's allowedActions (s3:GetObject)",
        ),
        (
            allow(json!("s3:Get*"), json!("arn:aws:s3:::reports/*")),
            "Action `s3:Get*` is not within",
        ),
        (
            allow(json!("s3:GetObject"), json!("arn:aws:s3:::payroll/*")),
            "Resource `arn:aws:s3:::payroll/*` is not within guardrail reports's allowedResources",
        ),
        (
            allow(json!("s3:GetObject"), json!("arn:aws:s3:::reports*")),
            "Resource `arn:aws:s3:::reports*` is not within",
        ),
        (
            allow(json!("s3:GetObject"), json!("*")),
            "Resource `*` is not within",
        ),
        (
            with_statement(
                json!({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::x/*"}),
            ),
            "NotResource reaches every other resource: Resource `*` is not within",
        ),
        (
            PodIamRoleSpec {
                managed_policy_arns: vec!["arn:aws:iam::aws:policy/PowerUserAccess".into()],
                policy: None,
                ..spec()
            },
            "managed policy `arn:aws:iam::aws:policy/PowerUserAccess` is granted by no guardrail: none of those selecting this namespace (reports) sets allowedManagedPolicyArns",
        ),
        (
            PodIamRoleSpec {
                managed_policy_arns: vec!["arn:aws:iam::111122223333:policy/platform-admin".into()],
                policy: None,
                ..spec()
            },
            "sets allowedManagedPolicyArns, and an unset list grants nothing",
        ),
        (
            PodIamRoleSpec {
                role_chain: vec![crate::testing::chain_link(
                    "admin",
                    "arn:aws:iam::111122223333:role/Admin",
                )],
                policy: None,
                ..spec()
            },
            "spec.roleChain: sts:AssumeRole on `arn:aws:iam::111122223333:role/Admin` is granted by no guardrail",
        ),
        (
            PodIamRoleSpec {
                trusted_role_arns: vec!["arn:aws:iam::999999999999:role/outside".into()],
                policy: None,
                ..spec()
            },
            "spec.trustedRoleArns `arn:aws:iam::999999999999:role/outside` is granted by no guardrail",
        ),
        (
            PodIamRoleSpec {
                audience: Some("vault".into()),
                policy: None,
                ..spec()
            },
            "spec.audience `vault` is granted by no guardrail",
        ),
    ];
    for (spec, expected) in cases {
        let message = err(&spec, &rules);
        assert!(
            message.contains(expected),
            "got `{message}`, want `{expected}`"
        );
    }
    let bare = PodIamRoleSpec {
        policy: None,
        ..spec()
    };
    assert!(ok(&bare, &rules), "the default audience needs no grant");
}

#[test]
fn arns_are_matched_as_iam_does_actions_ignoring_case() {
    let grant = payments_grant();
    let rules = [rule("payments", &grant)];
    assert!(ok(
        &allow(
            json!("DynamoDB:getitem"),
            json!("arn:aws:dynamodb:us-east-1:111122223333:table/payments")
        ),
        &rules
    ));
    let other_table = allow(
        json!("dynamodb:GetItem"),
        json!("arn:aws:dynamodb:us-east-1:111122223333:table/PAYMENTS"),
    );
    assert!(
        err(&other_table, &rules).contains("table/PAYMENTS` is not within"),
        "another table"
    );
}

#[test]
fn unset_lists_mean_any_only_without_default_deny() {
    let rules_spec = payments_grant();
    let rules = [rule("payments", &rules_spec)];
    let managed = PodIamRoleSpec {
        managed_policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        ..spec()
    };
    assert!(err(&managed, &rules).contains("granted by no guardrail"));
    assert!(decided(&managed, &rules, &LEGACY).is_ok());
}

#[test]
fn a_value_needs_one_grant_and_every_listing_guardrail() {
    // A limits-only guardrail for every namespace takes nothing away from the grant.
    let quota = PodIamRoleGuardrailSpec {
        max_roles_per_namespace: Some(5),
        ..Default::default()
    };
    let grant = payments_grant();
    assert!(ok(
        &spec(),
        &[rule("payments", &grant), rule("quota", &quota)]
    ));
    assert!(err(&spec(), &[rule("quota", &quota)]).contains("granted by no guardrail: none of those selecting this namespace (quota) sets allowedActions"));
    // Strictest wins where two list the same kind.
    let narrow = PodIamRoleGuardrailSpec {
        allowed_actions: Some(vec!["dynamodb:GetItem".into()]),
        ..Default::default()
    };
    assert!(err(&spec(), &[rule("payments", &grant), rule("narrow", &narrow)])
        .contains("Action `dynamodb:PutItem` is not within guardrail narrow's allowedActions (dynamodb:GetItem)"));
}

#[test]
fn the_built_in_deny_list_holds_under_a_grant_of_everything() {
    let all = everything();
    let rules = [rule("all", &all)];
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
        let message = err(&allow(action.clone(), resource), &rules);
        assert!(message.contains(expected), "{action}: {message}");
        assert!(
            message.starts_with("spec.policy Statement[0]: "),
            "{message}"
        );
    }
    assert!(ok(
        &allow(json!("sts:AssumeRole"), json!("arn:aws:iam::1:role/x")),
        &rules
    ));
    assert!(
        ok(
            &allow(json!(["iam:GetRole", "iam:List*"]), json!("*")),
            &rules
        ),
        "read-only IAM is fine"
    );
    let deny_all = with_statement(json!({"Effect": "Deny", "Action": "*", "Resource": "*"}));
    assert!(ok(&deny_all, &rules), "Deny statements only restrict");
    let not_action =
        with_statement(json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}));
    assert!(err(&not_action, &rules).contains("NotAction"));
    let assume_not_resource = with_statement(
        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": "arn:aws:iam::1:role/x"}),
    );
    assert!(err(&assume_not_resource, &rules).contains("NotResource may assume any other role"));
    let admin = PodIamRoleSpec {
        managed_policy_arns: vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
        ..spec()
    };
    assert!(
        err(&admin, &rules).contains("AdministratorAccess is denied by the built-in guardrail")
    );
    // The same list holds without any guardrail under --allow-without-guardrail.
    assert!(decided(&allow(json!("iam:PassRole"), json!("*")), &[], &LEGACY).is_err());
}

#[test]
fn audiences_beyond_the_default_need_a_grant() {
    let vault_only = PodIamRoleGuardrailSpec {
        allowed_audiences: Some(vec!["vault".into()]),
        ..payments_grant()
    };
    let rules = [rule("tenants", &vault_only)];
    assert!(ok(&spec(), &rules), "the default audience");
    let custom = |audience: &str| PodIamRoleSpec {
        audience: Some(audience.into()),
        ..spec()
    };
    assert!(ok(&custom("vault"), &rules));
    assert!(err(&custom("other"), &rules).contains(
        "spec.audience `other` is not within guardrail tenants's allowedAudiences (vault)"
    ));
    assert!(
        decided(&custom("other"), &[], &LEGACY).is_ok(),
        "legacy: no guardrail, no limit"
    );
}

#[test]
fn adoption_of_foreign_roles_needs_the_opt_in_and_a_guardrail() {
    let grant = PodIamRoleGuardrailSpec {
        adoptable_role_names: vec!["eksctl-*".into()],
        ..payments_grant()
    };
    let rules = [rule("migration", &grant)];
    let adopting = |name: &str, adopt: bool| PodIamRoleSpec {
        role_name: Some(name.into()),
        adopt,
        ..spec()
    };
    let context = guardrail_context(&DENY);
    let decided = |spec: &PodIamRoleSpec| decide(spec, &rules, &context);
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
    let rules = [rule("legacy", &grant)];
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
        policy: None,
        ..spec()
    };
    let team = PodIamRoleGuardrailSpec {
        allowed_chain_targets: Some(vec!["arn:aws:iam::444455556666:role/reports-*".into()]),
        ..Default::default()
    };
    let narrow = PodIamRoleGuardrailSpec {
        allowed_chain_targets: Some(vec!["arn:aws:iam::*:role/*-eu".into()]),
        ..Default::default()
    };
    let rules = [rule("team", &team), rule("narrow", &narrow)];
    assert!(
        ok(&chained(&[reports]), &rules),
        "allowedChainTargets alone grants a chain"
    );
    // Strictest wins: allowed by `team`, not by `narrow`.
    let us = "arn:aws:iam::444455556666:role/reports-us";
    assert_eq!(
        err(&chained(&[reports, us]), &rules),
        format!(
            "spec.roleChain: sts:AssumeRole on `{us}` is not within guardrail narrow's allowedChainTargets (arn:aws:iam::*:role/*-eu)"
        )
    );
    // The same grant written into spec.policy needs the action and resource granted too.
    let mut with_actions = team.clone();
    with_actions.allowed_actions = Some(vec!["sts:AssumeRole".into()]);
    with_actions.allowed_resources = Some(vec!["arn:aws:iam::*:role/*".into()]);
    let by_policy = [rule("team", &with_actions)];
    assert!(ok(
        &allow(json!("sts:AssumeRole"), json!(reports)),
        &by_policy
    ));
    let admin = allow(
        json!("sts:AssumeRole"),
        json!("arn:aws:iam::444455556666:role/admin"),
    );
    assert!(err(&admin, &by_policy).starts_with("spec.policy Statement[0]: sts:AssumeRole on"));
    let wildcard = allow(json!("sts:Assume*"), json!([reports]));
    assert!(err(&wildcard, &by_policy).contains("Action `sts:Assume*` is not within"));
    let not_resource = with_statement(
        json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": reports}),
    );
    assert!(err(&not_resource, &by_policy).contains("NotResource"));
    assert!(
        err(
            &allow(json!("sts:AssumeRole"), json!(reports)),
            &[rule("team", &team)]
        )
        .contains("Action `sts:AssumeRole` is granted by no guardrail")
    );
}

#[test]
fn trusted_roles_are_decided_by_every_guardrail() {
    let trusting = |arn: &str| PodIamRoleSpec {
        trusted_role_arns: vec![arn.into()],
        policy: None,
        ..spec()
    };
    let own_cluster = PodIamRoleGuardrailSpec {
        allowed_trusted_role_arns: Some(vec!["arn:aws:iam::111122223333:role/irsa/prod/*".into()]),
        ..Default::default()
    };
    let rules = [rule("cluster", &own_cluster)];
    assert!(ok(
        &trusting("arn:aws:iam::111122223333:role/irsa/prod/prod.bank.api"),
        &rules
    ));
    assert!(err(&trusting("arn:aws:iam::999999999999:role/outside"), &rules)
        .contains("spec.trustedRoleArns `arn:aws:iam::999999999999:role/outside` is not within guardrail cluster's allowedTrustedRoleArns"));
    assert!(
        decided(
            &trusting("arn:aws:iam::999999999999:role/outside"),
            &[],
            &LEGACY
        )
        .is_ok()
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
    let rules = [rule("tenants", &guardrail)];
    let ranked = |rank: usize| {
        let context = Context {
            rank,
            ..guardrail_context(&DENY)
        };
        evaluate(&spec(), &rules, &context)
    };
    assert_eq!(ranked(1), Ok(Enforced::default()));
    let cases = [
        (
            allow(json!("s3:GetObject"), json!("*")),
            "Action `s3:GetObject` is not within guardrail tenants's allowedActions (dynamodb:*)",
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
            "Resource `arn:aws:dynamodb:us-east-1:1:table/orders` is not within guardrail tenants's allowedResources",
        ),
        (
            PodIamRoleSpec {
                managed_policy_arns: vec!["arn:aws:iam::aws:policy/PowerUserAccess".into()],
                ..spec()
            },
            "managed policy `arn:aws:iam::aws:policy/PowerUserAccess` is not within guardrail tenants's allowedManagedPolicyArns",
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
    assert!(ranked(2).unwrap_err().contains(
        "guardrail tenants allows 2 PodIamRoles in this namespace, and 2 older ones exist"
    ));
}

#[test]
fn a_long_allow_list_is_cut_in_messages() {
    let many = PodIamRoleGuardrailSpec {
        allowed_actions: Some((0..40).map(|i| format!("svc{i}:GetThing")).collect()),
        allowed_resources: Some(vec!["*".into()]),
        ..Default::default()
    };
    let message = err(
        &allow(json!("s3:GetObject"), json!("*")),
        &[rule("many", &many)],
    );
    assert!(message.ends_with("svc4:GetThing and 35 more)"), "{message}");
}

#[test]
fn one_boundary_per_role() {
    let boundary = "arn:aws:iam::111122223333:policy/tenant-boundary";
    let a = PodIamRoleGuardrailSpec {
        required_permissions_boundary: Some(boundary.into()),
        ..payments_grant()
    };
    let b = PodIamRoleGuardrailSpec {
        required_permissions_boundary: Some("arn:aws:iam::111122223333:policy/other".into()),
        ..Default::default()
    };
    let forced = decided(&spec(), &[rule("a", &a)], &DENY).unwrap();
    assert_eq!(forced.permissions_boundary.as_deref(), Some(boundary));
    let own = PodIamRoleSpec {
        permissions_boundary: Some("arn:aws:iam::111122223333:policy/mine".into()),
        ..spec()
    };
    assert!(err(&own, &[rule("a", &a)]).contains("differs from"));
    assert!(err(&spec(), &[rule("a", &a), rule("b", &b)])
        .contains("guardrail b requires permissions boundary arn:aws:iam::111122223333:policy/other, but a guardrail requires"));

    // The operator's own boundary goes on every role, and nothing else may replace it.
    let operator = Baseline {
        default_deny: true,
        boundary: Some("arn:aws:iam::111122223333:policy/irsa-boundary".into()),
    };
    let grant = payments_grant();
    let enforced = decided(&spec(), &[rule("payments", &grant)], &operator).unwrap();
    assert_eq!(enforced.permissions_boundary, operator.boundary);
    let message = decided(&own, &[rule("payments", &grant)], &operator).unwrap_err();
    assert!(message.contains("spec.permissionsBoundary arn:aws:iam::111122223333:policy/mine differs from arn:aws:iam::111122223333:policy/irsa-boundary, which the operator (--permissions-boundary) puts on every role"), "{message}");
    let message = decided(&spec(), &[rule("a", &a)], &operator).unwrap_err();
    assert!(message.contains("guardrail a requires permissions boundary arn:aws:iam::111122223333:policy/tenant-boundary, but the operator (--permissions-boundary) requires"), "{message}");
    let same = PodIamRoleSpec {
        permissions_boundary: operator.boundary.clone(),
        ..spec()
    };
    assert!(decided(&same, &[rule("payments", &grant)], &operator).is_ok());
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
        role
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
    let payments: PodIamRoleGuardrailSpec =
        serde_json::from_value(json!({"namespaceSelector": {"matchLabels": {"team": "payments"}}}))
            .unwrap();
    assert!(selects(&payments, &labels));
    assert!(!selects(&payments, &BTreeMap::new()));
    let broken: PodIamRoleGuardrailSpec = serde_json::from_value(
        json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Bogus"}]}}),
    )
    .unwrap();
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
        let all = everything();
        if ok(&allow(json!(action.clone()), json!("*")), &[rule("all", &all)]) {
            for denied in BUILT_IN_DENIED_ACTIONS {
                prop_assert!(!overlaps(&action, denied), "{} reaches {}", action, denied);
            }
            for grant in BUILT_IN_DENIED_GRANTS {
                prop_assert!(!glob_match(&action, grant), "{} grants {}", action, grant);
            }
        }
    }
}
