//! The operator's own IAM policy, rendered for a cluster name, role path, partition and
//! OIDC provider mode: what `irsa-operator iam-policy` prints. Every role statement is
//! limited to the role path, and every write to roles or the provider to the cluster's tag.

use serde_json::{Value, json};

use crate::{naming, oidc::ProviderMode};

/// The AWS partitions IAM lives in.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
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

/// What the policy is rendered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTarget {
    pub cluster_name: String,
    /// The operator's `--role-path`; `None` is its default, `/irsa/<cluster-name>/`.
    pub role_path: Option<String>,
    pub partition: Partition,
    pub provider_mode: ProviderMode,
}

/// Reads on roles and the provider, writes to roles under the path that carry the cluster's
/// tag, and in `manage` mode writes to the provider this cluster tagged.
pub fn operator_policy(target: &PolicyTarget) -> Result<Value, String> {
    naming::validate_cluster_name(&target.cluster_name)?;
    let role_path = target
        .role_path
        .clone()
        .unwrap_or_else(|| format!("/irsa/{}/", target.cluster_name));
    naming::validate_role_path(&role_path)?;
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
        json!({
            "Sid": "ReadTheClusterOidcProvider",
            "Effect": "Allow",
            "Action": ["iam:GetOpenIDConnectProvider"],
            "Resource": providers,
        }),
    ];
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
        }
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
