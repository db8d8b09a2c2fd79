//! Operator settings: command-line flags with environment fallbacks, and the
//! resolved view the pure modules work from.

use std::{net::SocketAddr, time::Duration};

use clap::Args;

use irsa_api::{DeletionPolicy, ProviderMode};
use irsa_core::{
    config::{OperatorConfig, issuer_host_path, parse_duration, validate_boundary},
    guardrail::Baseline,
    naming,
};

/// The flags that decide which roles the operator makes and what they may grant: the
/// operator and `irsa-operator validate` take the same ones, through the same [`resolve`].
#[derive(Args, Debug, Clone)]
pub struct RoleArgs {
    /// Name of this cluster. It goes into role names, the default role path and the
    /// `irsa.dev/cluster` tag, so it must be unique among clusters sharing an AWS account.
    /// Letters, digits, `_` and `-`, at most 32 characters.
    #[arg(long, env = "IRSA_CLUSTER_NAME")]
    pub cluster_name: String,

    /// IAM path for the roles the operator creates. Default: `/irsa/<cluster-name>/`.
    #[arg(long, env = "IRSA_ROLE_PATH")]
    pub role_path: Option<String>,

    /// Prefix for derived role names (an explicit `spec.roleName` is used as is).
    #[arg(long, env = "IRSA_ROLE_NAME_PREFIX", default_value = "")]
    pub role_name_prefix: String,

    /// The permissions boundary (a managed policy ARN, in this account or AWS-managed)
    /// put on every role the operator creates, and restored when removed in IAM. It is the
    /// most any PodIamRole can ever grant; render the operator's IAM policy with the same
    /// flag so that IAM refuses any role without it. In a target account, the policy of
    /// the same path and name there.
    #[arg(long, env = "IRSA_PERMISSIONS_BOUNDARY")]
    pub permissions_boundary: Option<String>,

    /// Insecure: PodIamRoles in namespaces that no guardrail selects may grant anything
    /// outside the built-in deny list, and a guardrail's unset allow-list means "any".
    /// Without it (the default) nothing is granted that no guardrail grants.
    #[arg(long, env = "IRSA_ALLOW_WITHOUT_GUARDRAIL", action = clap::ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    pub allow_without_guardrail: bool,
}

/// Flags of `irsa-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub roles: RoleArgs,

    /// The cluster's OIDC issuer URL (`https://...`). Discovered from the API server's
    /// `/.well-known/openid-configuration` when not set.
    #[arg(long, env = "IRSA_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// `existing`: verify the cluster's IAM OIDC provider (it exists, has the issuer URL and
    /// every audience in use) and report problems. `manage`: also create it and keep its
    /// thumbprint and client IDs right; a provider this operator did not create is never modified.
    #[arg(
        long = "oidc-provider",
        env = "IRSA_OIDC_PROVIDER",
        default_value = "existing"
    )]
    pub oidc_provider_mode: ProviderMode,

    /// Extra CA certificates (PEM) to trust when fingerprinting a private issuer's TLS chain.
    #[arg(long, env = "IRSA_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<std::path::PathBuf>,

    /// Namespaces to watch, comma separated. Default: all namespaces.
    #[arg(long, env = "IRSA_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// How many PodIamRoles are reconciled at the same time.
    #[arg(long, env = "IRSA_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// How often an in-sync PodIamRole is re-read from IAM to repair drift (e.g. `10m`, `30s`).
    #[arg(long, env = "IRSA_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// Most IAM calls per second, reads and writes together, per account. The operator runs
    /// at this ceiling while IAM accepts its calls; a `Throttling` cuts the rate to 70 % of
    /// what it sent, and it climbs back over seconds. IAM's quota is per account, shared
    /// with every other tool there, and unpublished: the throttles find it.
    #[arg(long, env = "IRSA_IAM_RATE", default_value_t = 100.0, value_parser = parse_rate)]
    pub iam_rate: f64,

    /// IAM calls allowed at once after a quiet spell, on top of the rate: a start-up or a
    /// guardrail change reconciles many objects together.
    #[arg(long, env = "IRSA_IAM_BURST", default_value_t = 20.0, value_parser = parse_rate)]
    pub iam_burst: f64,

    /// Longest wait for one AWS call attempt (e.g. `10s`); a hung endpoint then fails the
    /// call instead of holding a worker.
    #[arg(long, env = "IRSA_AWS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub aws_timeout: Duration,

    /// How often the account's roles are listed in bulk (GetAccountAuthorizationDetails: one
    /// IAM call per 1,000 roles). Drift checks compare against the listing instead of
    /// reading each role, and it finds orphans: roles tagged for this cluster whose
    /// PodIamRole no longer exists. Default: the resync interval.
    #[arg(long, env = "IRSA_LISTING_INTERVAL", value_parser = parse_duration)]
    pub listing_interval: Option<Duration>,

    /// Delete an orphaned role once it has been seen orphaned for this long (e.g. `1h`).
    /// Default: only report orphans, in the log and the `irsa_operator_orphan_roles` metric.
    #[arg(long, env = "IRSA_DELETE_ORPHANS_AFTER", value_parser = parse_duration)]
    pub delete_orphans_after: Option<Duration>,

    /// Address of the HTTP server for `/metrics`, `/livez` and `/readyz`.
    #[arg(long, env = "IRSA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Count the pods that run without their ServiceAccount's current role (in
    /// `status.stalePods`, with an Event) and restart the workloads of PodIamRoles with
    /// `spec.restartOnRoleChange`. Needs the RBAC in `config/restart`.
    #[arg(long, env = "IRSA_RESTART_WORKLOADS", action = clap::ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    pub restart_workloads: bool,

    /// Log format: `text` or `json`.
    #[arg(long, env = "IRSA_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// What happens to the IAM role of a deleted PodIamRole that sets no
    /// `spec.deletionPolicy`: Delete or Retain.
    #[arg(long, env = "IRSA_DEFAULT_DELETION_POLICY", default_value = "Delete", value_parser = parse_deletion_policy)]
    pub default_deletion_policy: DeletionPolicy,

    #[command(flatten)]
    pub leader_election: crate::leader::LeaderElectionArgs,

    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_deletion_policy(text: &str) -> Result<DeletionPolicy, String> {
    match text {
        "Delete" => Ok(DeletionPolicy::Delete),
        "Retain" => Ok(DeletionPolicy::Retain),
        other => Err(format!("`{other}` is not Delete or Retain")),
    }
}

/// A positive, finite number of calls (per second).
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// The partition (`aws`, `aws-cn`, ...) an ARN is in.
pub fn partition_of(arn: &str) -> Result<String, String> {
    arn.split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("cannot read the partition from ARN `{arn}`"))
}

/// Builds the config from the role flags and the facts about the account and cluster,
/// rejecting bad settings.
pub fn resolve(
    args: &RoleArgs,
    issuer: &str,
    partition: &str,
    account_id: &str,
) -> Result<OperatorConfig, String> {
    naming::validate_cluster_name(&args.cluster_name)?;
    let issuer_host_path = issuer_host_path(issuer)?;
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{account_id}` is not an AWS account ID (12 digits)"
        ));
    }
    let role_path = args
        .role_path
        .clone()
        .unwrap_or_else(|| format!("/irsa/{}/", args.cluster_name));
    naming::validate_role_path(&role_path)?;
    naming::validate_prefix(&args.role_name_prefix)?;
    if let Some(boundary) = &args.permissions_boundary {
        validate_boundary(boundary, partition, account_id)?;
    }
    Ok(OperatorConfig {
        cluster_name: args.cluster_name.clone(),
        partition: partition.to_string(),
        account_id: account_id.to_string(),
        issuer_host_path,
        role_path,
        role_name_prefix: args.role_name_prefix.clone(),
        baseline: Baseline {
            default_deny: !args.allow_without_guardrail,
            boundary: args.permissions_boundary.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use irsa_core::config::boundary_in_account;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RunArgs,
    }

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["x", "--cluster-name", "prod"];
        argv.extend_from_slice(extra);
        Wrapper::parse_from(argv).args
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn resolves_defaults_and_arns() {
        let config = resolve(
            &args(&[]).roles,
            "https://oidc.eks.us-east-1.amazonaws.com/id/ABC/",
            "aws",
            "111122223333",
        )
        .unwrap();
        assert_eq!(config, irsa_core::testing::test_config());
        assert_eq!(
            config.oidc_provider_arn(),
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        assert_eq!(
            config.role_arn("r"),
            "arn:aws:iam::111122223333:role/irsa/prod/r"
        );
    }

    #[test]
    fn rejects_bad_settings() {
        let refused = |extra: &[&str], issuer: &str, account: &str| {
            resolve(&args(extra).roles, issuer, "aws", account).expect_err("refused")
        };
        let account = "111122223333";
        assert!(resolve(&args(&[]).roles, "https://i", "aws", account).is_ok());
        assert!(refused(&[], "http://insecure", account).contains("https"));
        assert!(refused(&["--role-path", "no-slash"], "https://i", account).contains("path"));
        assert!(refused(&["--role-name-prefix", "a b"], "https://i", account).contains("a b"));
        assert!(refused(&[], "https://i", "1").contains("12 digits"));
        assert!(refused(&[], "https://i", "11112222333x").contains("12 digits"));
        let mut bad_cluster = args(&[]).roles;
        bad_cluster.cluster_name = "has.dot".into();
        assert!(resolve(&bad_cluster, "https://i", "aws", account).is_err());
    }

    #[test]
    fn partition_from_the_callers_arn() {
        assert_eq!(
            partition_of("arn:aws-cn:sts::111122223333:assumed-role/x/y").as_deref(),
            Ok("aws-cn")
        );
        assert!(partition_of("not-an-arn").is_err());
        assert!(partition_of("arn::sts::1:x").is_err());
    }

    #[test]
    fn iam_budget_flags() {
        let defaults = args(&[]);
        assert_eq!((defaults.iam_rate, defaults.iam_burst), (100.0, 20.0));
        assert_eq!(defaults.aws_timeout, Duration::from_secs(10));
        let set = args(&[
            "--iam-rate",
            "2.5",
            "--iam-burst",
            "5",
            "--aws-timeout",
            "3s",
        ]);
        assert_eq!((set.iam_rate, set.iam_burst), (2.5, 5.0));
        assert_eq!(set.aws_timeout, Duration::from_secs(3));
        for bad in ["0", "-1", "NaN", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_deletion_policy() {
        assert_eq!(args(&[]).default_deletion_policy, DeletionPolicy::Delete);
        let retain = args(&["--default-deletion-policy", "Retain"]);
        assert_eq!(retain.default_deletion_policy, DeletionPolicy::Retain);
        assert!(
            Wrapper::try_parse_from([
                "x",
                "--cluster-name",
                "p",
                "--default-deletion-policy",
                "Keep"
            ])
            .is_err()
        );
    }

    #[test]
    fn default_deny_and_the_operator_boundary() {
        let resolved =
            |extra: &[&str]| resolve(&args(extra).roles, "https://i", "aws", "111122223333");
        let secure = resolved(&[]).unwrap().baseline;
        assert!(secure.default_deny, "default deny without any flag");
        assert_eq!(secure.boundary, None);
        assert!(
            !resolved(&["--allow-without-guardrail"])
                .unwrap()
                .baseline
                .default_deny
        );
        let own = "arn:aws:iam::111122223333:policy/irsa/boundary";
        let bounded = resolved(&["--permissions-boundary", own]).unwrap();
        assert_eq!(bounded.baseline.boundary.as_deref(), Some(own));
        assert!(
            resolved(&[
                "--permissions-boundary",
                "arn:aws:iam::aws:policy/PowerUserAccess"
            ])
            .is_ok()
        );
        for bad in [
            "arn:aws:iam::999999999999:policy/elsewhere",
            "arn:aws-cn:iam::111122223333:policy/b",
            "arn:aws:iam::111122223333:role/b",
            "arn:aws:iam::111122223333:policy/",
            "boundary",
        ] {
            let error = resolved(&["--permissions-boundary", bad]).unwrap_err();
            assert!(error.contains("--permissions-boundary"), "{bad}: {error}");
        }
        assert_eq!(
            boundary_in_account(own, "aws", "444455556666"),
            "arn:aws:iam::444455556666:policy/irsa/boundary"
        );
        assert_eq!(
            boundary_in_account(
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "aws",
                "444455556666"
            ),
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        );
    }

    #[test]
    fn namespaces_are_comma_separated() {
        assert_eq!(args(&["--namespaces", "a,b"]).namespaces, ["a", "b"]);
        assert!(args(&[]).namespaces.is_empty());
    }
}
