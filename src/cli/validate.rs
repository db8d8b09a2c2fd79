//! `irsa-operator validate`: the reconciler's checks on manifests, offline, for pull
//! request pipelines. Prints one line per PodIamRole; exits non-zero when any is refused.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args;

use super::manifests::Manifests;
use irsa_core::{config::OperatorConfig, guardrail::Baseline, naming};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A manifest file, or a directory searched recursively for *.yaml, *.yml and *.json.
    /// May be given more than once.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Files or directories of PodIamRoleGuardrails (and Namespaces, for their labels) to
    /// evaluate against, as the cluster has them.
    #[arg(long)]
    pub guardrails: Vec<PathBuf>,
    /// The operator's --cluster-name: derived role names and the roleName prefix rule use it.
    #[arg(long, env = "IRSA_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The operator's --role-name-prefix.
    #[arg(long, env = "IRSA_ROLE_NAME_PREFIX", default_value = "")]
    pub role_name_prefix: String,
    /// The operator's --permissions-boundary.
    #[arg(long, env = "IRSA_PERMISSIONS_BOUNDARY")]
    pub permissions_boundary: Option<String>,
    /// The operator's --allow-without-guardrail (insecure).
    #[arg(long, env = "IRSA_ALLOW_WITHOUT_GUARDRAIL", action = clap::ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    pub allow_without_guardrail: bool,
    /// The namespace of PodIamRoles whose manifest names none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    if let Err(error) = naming::validate_cluster_name(&args.cluster_name)
        .and_then(|()| naming::validate_prefix(&args.role_name_prefix))
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let mut manifests = Manifests::default();
    for root in args.files.iter().chain(&args.guardrails) {
        let files = match manifest_files(root) {
            Ok(files) => files,
            Err(error) => {
                eprintln!("error: {}: {error}", root.display());
                return ExitCode::from(2);
            }
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => manifests.add(&file.display().to_string(), &text, &args.namespace),
                Err(error) => manifests
                    .errors
                    .push((file.display().to_string(), error.to_string())),
            }
        }
    }
    let config = OperatorConfig {
        cluster_name: args.cluster_name.clone(),
        // Placeholders: no check reads the account, and the trust policy only its size.
        partition: "aws".into(),
        account_id: "000000000000".into(),
        issuer_host_path: "oidc.eks.us-east-1.amazonaws.com/id/00000000000000000000000000000000"
            .into(),
        role_path: format!("/irsa/{}/", args.cluster_name),
        role_name_prefix: args.role_name_prefix.clone(),
        baseline: Baseline {
            default_deny: !args.allow_without_guardrail,
            boundary: args.permissions_boundary.clone(),
        },
    };
    for namespace in manifests.unlabelled_namespaces() {
        println!(
            "note: no Namespace manifest for {namespace}: guardrails were chosen as for a namespace \
             without labels; add its manifest with -f or --guardrails to check its label selectors"
        );
    }
    let mut refused = manifests.errors.len();
    for (place, error) in &manifests.errors {
        println!("{place}: cannot be read: {error}");
    }
    for (name, verdict) in manifests.check(&config) {
        match verdict {
            Ok(()) => println!("{name}: ok"),
            Err(outcome) => {
                refused += 1;
                println!("{name}: {}: {}", outcome.reason(), outcome.message());
            }
        }
    }
    println!(
        "{} PodIamRoles, {} guardrails, {refused} refused",
        manifests.roles.len(),
        manifests.guardrails.len()
    );
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `root` itself, or the manifest files under it, in a stable order.
fn manifest_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !root.is_dir() {
        std::fs::metadata(root)?;
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(manifest_files(&path)?);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
