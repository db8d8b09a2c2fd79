//! The operator's own IAM policy, rendered for a cluster name, role path, partition, OIDC
//! provider mode and permissions boundary: what `irsa-operator iam-policy` prints. Every
//! role statement is limited to the role path, and every write to roles or the provider to
//! the cluster's tag. With a boundary, IAM itself refuses a role without it: the operator
//! can then never grant more than the boundary allows, even if it is compromised.

use serde_json::{Value, json};

use crate::naming;
use irsa_api::ProviderMode;

/// The AWS partitions IAM lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Commercial regions.
    Aws,
    /// AWS GovCloud (US).
    AwsUsGov,
    /// China regions.
    AwsCn,
}

impl Partition {
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsCn => "aws-cn",
        }
    }
}

impl std::str::FromStr for Partition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [Partition::Aws, Partition::AwsUsGov, Partition::AwsCn]
            .into_iter()
            .find(|partition| partition.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not aws, aws-us-gov or aws-cn"))
    }
}

/// What the policy is rendered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTarget {
    pub cluster_name: String,
    /// The operator's `--role-path`; `None` is its default, `/irsa/<cluster-name>/`.
    pub role_path: Option<String>,
    pub partition: Partition,
    pub provider_mode: ProviderMode,
    /// The operator's `--permissions-boundary`: the managed policy every role it creates
    /// must carry. `None` renders the policy without the boundary conditions.
    pub permissions_boundary: Option<String>,
}

/// The boundary's ARN must be an IAM managed policy of the same partition: a customer
/// policy (`arn:<partition>:iam::<12 digits>:policy/<path><name>`) or an AWS one
/// (`arn:<partition>:iam::aws:policy/...`). No wildcard: IAM would take it literally in
/// `StringEquals`, and in the Deny statement's Resource it would reach other policies.
pub fn validate_boundary_arn(arn: &str, partition: Partition) -> Result<(), String> {
    let expected = format!("arn:{}:iam::<account>:policy/<name>", partition.as_str());
    let bad = |why: &str| {
        Err(format!(
            "`{arn}` is not an IAM managed policy ARN ({expected}): {why}"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", arn_partition, "iam", "", account, resource] = parts.as_slice() else {
        return bad("it must have the form");
    };
    if *arn_partition != partition.as_str() {
        return bad(&format!("its partition is not {}", partition.as_str()));
    }
    let account_ok =
        *account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    if !account_ok {
        return bad("the account must be 12 digits or `aws`");
    }
    let Some(path_and_name) = resource.strip_prefix("policy/") else {
        return bad("the resource must start with `policy/`");
    };
    let (path, name) = match path_and_name.rsplit_once('/') {
        Some((path, name)) => (Some(path), name),
        None => (None, path_and_name),
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if name.is_empty() || name.len() > 128 || !name.chars().all(name_char) {
        return bad("the policy name must be 1 to 128 of `A-Za-z0-9+=,.@_-`");
    }
    if let Some(path) = path {
        // IAM paths: `/`-separated segments of printable ASCII other than `/`.
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && c != '*' && c != '?')
        };
        if path.len() + 2 > 512 || !path.split('/').all(segment_ok) {
            return bad("the policy path must be `/` or `/segment/.../`");
        }
    }
    Ok(())
}

/// Reads on roles and the provider, writes to roles under the path that carry the cluster's
/// tag, and in `manage` mode writes to the provider this cluster tagged. With a boundary,
/// the role writes that could grant anything need it, and it can be neither removed nor
/// changed.
pub fn operator_policy(target: &PolicyTarget) -> Result<Value, String> {
    naming::validate_cluster_name(&target.cluster_name)?;
    let role_path = target
        .role_path
        .clone()
        .unwrap_or_else(|| format!("/irsa/{}/", target.cluster_name));
    naming::validate_role_path(&role_path)?;
    if let Some(boundary) = &target.permissions_boundary {
        validate_boundary_arn(boundary, target.partition)?;
    }
    let partition = target.partition.as_str();
    let cluster = &target.cluster_name;
    let roles = format!("arn:{partition}:iam::*:role{role_path}*");
    let providers = format!("arn:{partition}:iam::*:oidc-provider/*");
    let tagged =
        |key: &str| json!({"StringEquals": {format!("aws:{key}/irsa.dev/cluster"): cluster}});

    let mut statements = vec![
        json!({
            "Sid": "ReadRolesToDetectConflicts",
            "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"],
            "Resource": format!("arn:{partition}:iam::*:role/*"),
        }),
        json!({
            "Sid": "ListRolesAndTheirTagsToFindOrphans",
            "Effect": "Allow",
            "Action": ["iam:GetAccountAuthorizationDetails"],
            "Resource": "*",
        }),
    ];
    match &target.permissions_boundary {
        None => statements.extend([
            json!({
                "Sid": "CreateOnlyClusterTaggedRolesUnderThePath",
                "Effect": "Allow",
                "Action": ["iam:CreateRole", "iam:TagRole"],
                "Resource": roles,
                "Condition": tagged("RequestTag"),
            }),
            json!({
                "Sid": "ChangeOnlyRolesThisClusterOwns",
                "Effect": "Allow",
                "Action": [
                    "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
                    "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
                    "iam:TagRole", "iam:UntagRole",
                    "iam:PutRolePolicy", "iam:DeleteRolePolicy",
                    "iam:AttachRolePolicy", "iam:DetachRolePolicy",
                    "iam:DeleteRole",
                ],
                "Resource": roles,
                "Condition": tagged("ResourceTag"),
            }),
        ]),
        Some(boundary) => {
            // `iam:PermissionsBoundary` is the boundary a CreateRole or
            // PutRolePermissionsBoundary sets, and the role's current one for
            // PutRolePolicy and AttachRolePolicy.
            let with_boundary = |key: &str| {
                json!({"StringEquals": {
                    format!("aws:{key}/irsa.dev/cluster"): cluster,
                    "iam:PermissionsBoundary": boundary,
                }})
            };
            statements.extend([
                json!({
                    "Sid": "CreateRolesUnderThePathOnlyWithTheClusterTagAndTheBoundary",
                    "Effect": "Allow",
                    "Action": ["iam:CreateRole"],
                    "Resource": roles,
                    "Condition": with_boundary("RequestTag"),
                }),
                // A CreateRole with tags is also authorized as TagRole, which has no
                // `iam:PermissionsBoundary` key: it needs a statement of its own.
                json!({
                    "Sid": "TagRolesUnderThePathOnlyWithTheClusterTag",
                    "Effect": "Allow",
                    "Action": ["iam:TagRole"],
                    "Resource": roles,
                    "Condition": tagged("RequestTag"),
                }),
                json!({
                    "Sid": "ChangeOnlyRolesThisClusterOwnsWithoutGrantingAnything",
                    "Effect": "Allow",
                    "Action": [
                        "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
                        "iam:TagRole", "iam:UntagRole",
                        "iam:DeleteRolePolicy", "iam:DetachRolePolicy",
                        "iam:DeleteRole",
                    ],
                    "Resource": roles,
                    "Condition": tagged("ResourceTag"),
                }),
                json!({
                    "Sid": "SetOnlyTheBoundaryOnRolesThisClusterOwns",
                    "Effect": "Allow",
                    "Action": ["iam:PutRolePermissionsBoundary"],
                    "Resource": roles,
                    "Condition": with_boundary("ResourceTag"),
                }),
                json!({
                    "Sid": "GrantPoliciesOnlyToOwnedRolesThatCarryTheBoundary",
                    "Effect": "Allow",
                    "Action": ["iam:PutRolePolicy", "iam:AttachRolePolicy"],
                    "Resource": roles,
                    "Condition": with_boundary("ResourceTag"),
                }),
            ]);
        }
    }
    statements.push(json!({
        "Sid": "ReadTheClusterOidcProvider",
        "Effect": "Allow",
        "Action": ["iam:GetOpenIDConnectProvider"],
        "Resource": providers,
    }));
    if target.provider_mode == ProviderMode::Manage {
        statements.push(json!({
            "Sid": "CreateTheClusterOidcProviderTagged",
            "Effect": "Allow",
            "Action": ["iam:CreateOpenIDConnectProvider", "iam:TagOpenIDConnectProvider"],
            "Resource": providers,
            "Condition": tagged("RequestTag"),
        }));
        statements.push(json!({
            "Sid": "UpdateOnlyTheOidcProviderThisClusterCreated",
            "Effect": "Allow",
            "Action": [
                "iam:UpdateOpenIDConnectProviderThumbprint",
                "iam:AddClientIDToOpenIDConnectProvider",
                "iam:RemoveClientIDFromOpenIDConnectProvider",
            ],
            "Resource": providers,
            "Condition": tagged("ResourceTag"),
        }));
    }
    statements.push(json!({
        "Sid": "NeverStripOwnershipTags",
        "Effect": "Deny",
        "Action": "iam:UntagRole",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": ["irsa.dev/*"]}},
    }));
    if let Some(boundary) = &target.permissions_boundary {
        // Explicit denies win over any Allow, also one added to this role by mistake later.
        statements.push(json!({
            "Sid": "NeverRemoveAPermissionsBoundary",
            "Effect": "Deny",
            "Action": "iam:DeleteRolePermissionsBoundary",
            "Resource": "*",
        }));
        statements.push(json!({
            "Sid": "NeverChangeTheBoundaryPolicy",
            "Effect": "Deny",
            "Action": [
                "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy",
            ],
            "Resource": boundary,
        }));
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// The operator's own policy, plus `sts:AssumeRole` on the management roles of its
/// target accounts (PodIamRoleAccounts), each of which must be a role ARN.
pub fn with_management_roles(mut policy: Value, roles: &[String]) -> Result<Value, String> {
    if roles.is_empty() {
        return Ok(policy);
    }
    if let Some(bad) = roles.iter().find(|arn| {
        !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/"))
    }) {
        return Err(format!("`{bad}` is not the ARN of an IAM role"));
    }
    let statement = json!({
        "Sid": "AssumeTheManagementRolesOfTargetAccounts",
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": roles,
    });
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.push(statement);
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(role_path: Option<&str>, partition: Partition, mode: ProviderMode) -> PolicyTarget {
        PolicyTarget {
            cluster_name: "prod".into(),
            role_path: role_path.map(str::to_string),
            partition,
            provider_mode: mode,
            permissions_boundary: None,
        }
    }

    const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/irsa/irsa-boundary";

    fn bounded() -> Value {
        let mut target = target(None, Partition::Aws, ProviderMode::Manage);
        target.permissions_boundary = Some(BOUNDARY.into());
        operator_policy(&target).unwrap()
    }

    fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid} in {policy:#}"))
    }

    /// The Allow statements that name `action`.
    fn allowing<'a>(policy: &'a Value, action: &str) -> Vec<&'a Value> {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .filter(|s| match &s["Action"] {
                Value::String(a) => a == action,
                Value::Array(actions) => actions.iter().any(|a| a == action),
                _ => false,
            })
            .collect()
    }

    #[test]
    fn without_a_boundary_nothing_mentions_one() {
        let policy = operator_policy(&target(None, Partition::Aws, ProviderMode::Manage)).unwrap();
        let text = policy.to_string();
        assert!(!text.contains("iam:PermissionsBoundary"), "{text}");
        assert!(!text.contains("PolicyVersion"), "{text}");
        assert_eq!(
            allowing(&policy, "iam:DeleteRolePermissionsBoundary").len(),
            1
        );
    }

    #[test]
    fn a_boundary_conditions_every_write_that_could_grant() {
        let policy = bounded();
        crate::policy::validate_identity_policy(&policy).expect("a valid policy");
        let boundary_and_tag = |key: &str| {
            json!({"StringEquals": {format!("aws:{key}/irsa.dev/cluster"): "prod",
                "iam:PermissionsBoundary": BOUNDARY}})
        };
        for (action, condition) in [
            ("iam:CreateRole", boundary_and_tag("RequestTag")),
            (
                "iam:PutRolePermissionsBoundary",
                boundary_and_tag("ResourceTag"),
            ),
            ("iam:PutRolePolicy", boundary_and_tag("ResourceTag")),
            ("iam:AttachRolePolicy", boundary_and_tag("ResourceTag")),
        ] {
            let statements = allowing(&policy, action);
            assert_eq!(statements.len(), 1, "{action}: {statements:#?}");
            assert_eq!(statements[0]["Condition"], condition, "{action}");
            assert_eq!(statements[0]["Resource"], "arn:aws:iam::*:role/irsa/prod/*");
        }
        // TagRole has no iam:PermissionsBoundary key: at creation it goes by the request's
        // cluster tag, afterwards by the role's.
        let tag_conditions: Vec<&Value> = allowing(&policy, "iam:TagRole")
            .iter()
            .map(|s| &s["Condition"])
            .collect();
        assert_eq!(
            tag_conditions,
            [
                &json!({"StringEquals": {"aws:RequestTag/irsa.dev/cluster": "prod"}}),
                &json!({"StringEquals": {"aws:ResourceTag/irsa.dev/cluster": "prod"}}),
            ]
        );
        assert!(allowing(&policy, "iam:DeleteRolePermissionsBoundary").is_empty());
    }

    #[test]
    fn a_boundary_is_never_removed_nor_changed() {
        let policy = bounded();
        assert_eq!(
            statement(&policy, "NeverRemoveAPermissionsBoundary"),
            &json!({"Sid": "NeverRemoveAPermissionsBoundary", "Effect": "Deny",
                "Action": "iam:DeleteRolePermissionsBoundary", "Resource": "*"})
        );
        let policy_writes = statement(&policy, "NeverChangeTheBoundaryPolicy");
        assert_eq!(policy_writes["Effect"], "Deny");
        assert_eq!(policy_writes["Resource"], BOUNDARY);
        assert_eq!(
            policy_writes["Action"],
            json!([
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion",
                "iam:TagPolicy",
                "iam:UntagPolicy"
            ])
        );
        // Everything else is as without a boundary.
        let unbounded =
            operator_policy(&target(None, Partition::Aws, ProviderMode::Manage)).unwrap();
        for sid in [
            "ReadRolesToDetectConflicts",
            "ListRolesAndTheirTagsToFindOrphans",
            "ReadTheClusterOidcProvider",
            "CreateTheClusterOidcProviderTagged",
            "UpdateOnlyTheOidcProviderThisClusterCreated",
            "NeverStripOwnershipTags",
        ] {
            assert_eq!(statement(&policy, sid), statement(&unbounded, sid), "{sid}");
        }
        let sids: std::collections::BTreeSet<&str> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().expect("every statement has a Sid"))
            .collect();
        assert_eq!(sids.len(), policy["Statement"].as_array().unwrap().len());
    }

    #[test]
    fn boundary_arns_are_managed_policies_of_the_partition() {
        for good in [
            BOUNDARY,
            "arn:aws:iam::111122223333:policy/b",
            "arn:aws:iam::aws:policy/PowerUserAccess",
            "arn:aws:iam::111122223333:policy/a/b.c/name+=,.@_-",
        ] {
            assert_eq!(
                validate_boundary_arn(good, Partition::Aws),
                Ok(()),
                "{good}"
            );
        }
        assert!(
            validate_boundary_arn(
                "arn:aws-us-gov:iam::111122223333:policy/b",
                Partition::AwsUsGov
            )
            .is_ok()
        );
        for bad in [
            "",
            "boundary",
            "arn:aws:iam::111122223333:role/b",
            "arn:aws:iam::111122223333:policy/",
            "arn:aws:iam::111122223333:policy/*",
            "arn:aws:iam::111122223333:policy/b?",
            "arn:aws:iam::*:policy/b",
            "arn:aws:iam::1111:policy/b",
            "arn:aws:iam:us-east-1:111122223333:policy/b",
            "arn:aws:s3::111122223333:policy/b",
            "arn:aws-cn:iam::111122223333:policy/b",
            "arn:aws:iam::111122223333:policy//b",
            "arn:aws:iam::111122223333:policy/a b",
        ] {
            assert!(validate_boundary_arn(bad, Partition::Aws).is_err(), "{bad}");
        }
        let mut wrong_partition = target(None, Partition::AwsCn, ProviderMode::Existing);
        wrong_partition.permissions_boundary = Some(BOUNDARY.into());
        let error = operator_policy(&wrong_partition).unwrap_err();
        assert!(error.contains("partition is not aws-cn"), "{error}");
    }

    #[test]
    fn role_statements_follow_path_and_partition() {
        let policy = operator_policy(&target(
            Some("/teams/x/"),
            Partition::AwsUsGov,
            ProviderMode::Existing,
        ))
        .unwrap();
        let text = policy.to_string();
        assert!(
            text.contains("arn:aws-us-gov:iam::*:role/teams/x/*"),
            "{text}"
        );
        assert!(!text.contains("arn:aws:"), "{text}");
        assert!(
            !text.contains("CreateOpenIDConnectProvider"),
            "existing mode never writes the provider"
        );
        let default = operator_policy(&target(None, Partition::Aws, ProviderMode::Manage)).unwrap();
        assert!(
            default
                .to_string()
                .contains("arn:aws:iam::*:role/irsa/prod/*")
        );
        assert!(default.to_string().contains("CreateOpenIDConnectProvider"));
    }

    #[test]
    fn management_roles_add_only_assume_role_on_them() {
        let own = operator_policy(&target(None, Partition::Aws, ProviderMode::Existing)).unwrap();
        assert_eq!(with_management_roles(own.clone(), &[]).unwrap(), own);
        let arn = "arn:aws:iam::222222222222:role/irsa-management".to_string();
        let policy = with_management_roles(own.clone(), std::slice::from_ref(&arn)).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(
            statements.len(),
            own["Statement"].as_array().unwrap().len() + 1
        );
        assert_eq!(
            statements.last().unwrap(),
            &json!({"Sid": "AssumeTheManagementRolesOfTargetAccounts", "Effect": "Allow",
                "Action": "sts:AssumeRole", "Resource": [arn]})
        );
        assert!(with_management_roles(own, &["arn:aws:iam::2:user/x".into()]).is_err());
    }

    #[test]
    fn bad_targets_are_rejected() {
        let mut bad = target(Some("no-slash"), Partition::Aws, ProviderMode::Existing);
        assert!(operator_policy(&bad).is_err());
        bad.role_path = None;
        bad.cluster_name = "has.dot".into();
        assert!(operator_policy(&bad).is_err());
    }
}
