//! `irsa-operator iam-policy`: the operator's own IAM policy (or a target account's
//! management trust policy), rendered for the flags the operator runs with.

use std::process::ExitCode;

use clap::Args;

use irsa_api::ProviderMode;
use irsa_core::{
    account,
    iam_policy::{self, Partition, PolicyTarget},
};

#[derive(Args, Debug)]
pub struct IamPolicyArgs {
    /// The operator's `--cluster-name`.
    #[arg(long)]
    pub cluster_name: String,
    /// The operator's `--role-path`. Default: `/irsa/<cluster-name>/`.
    #[arg(long)]
    pub role_path: Option<String>,
    /// The AWS partition of the account.
    #[arg(long, value_enum, default_value = "aws")]
    pub partition: Partition,
    /// The operator's `--oidc-provider`: `manage` adds the rights to create and update
    /// the cluster's provider.
    #[arg(long = "oidc-provider", value_enum, default_value = "existing")]
    pub oidc_provider_mode: ProviderMode,
    /// The operator's `--permissions-boundary` (an IAM managed policy ARN): IAM then
    /// refuses to create a role without exactly this boundary, to set another one, to
    /// remove one, to put or attach a policy on a role that lacks it, and any change to
    /// the boundary policy itself. Without it, nothing caps what the roles may be granted.
    #[arg(long, value_name = "POLICY_ARN")]
    pub permissions_boundary: Option<String>,
    /// The management role of a target account the operator assumes (repeatable):
    /// adds `sts:AssumeRole` on it to the operator's own policy.
    #[arg(long = "management-role")]
    pub management_roles: Vec<String>,
    /// Print the trust policy of a target account's management role instead: the
    /// operator's own role, given here by ARN, may assume it with `--external-id`.
    #[arg(long, value_name = "OPERATOR_ROLE_ARN", requires = "external_id")]
    pub management_trust: Option<String>,
    /// The PodIamRoleAccount's `externalId`, for `--management-trust`.
    #[arg(long)]
    pub external_id: Option<String>,
}

impl IamPolicyArgs {
    /// What the operator's policy is rendered for.
    pub fn target(&self) -> PolicyTarget {
        PolicyTarget {
            cluster_name: self.cluster_name.clone(),
            role_path: self.role_path.clone(),
            partition: self.partition,
            provider_mode: self.oidc_provider_mode,
            permissions_boundary: self.permissions_boundary.clone(),
        }
    }
}

pub fn run(args: &IamPolicyArgs) -> ExitCode {
    let rendered = match (&args.management_trust, &args.external_id) {
        (Some(operator_role), Some(external_id)) => {
            Ok(account::management_trust_policy(operator_role, external_id))
        }
        _ => iam_policy::operator_policy(&args.target())
            .and_then(|policy| iam_policy::with_management_roles(policy, &args.management_roles)),
    };
    match rendered {
        Ok(policy) => {
            let text = serde_json::to_string_pretty(&policy).expect("JSON always prints");
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
