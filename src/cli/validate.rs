//! `irsa-operator validate`: the reconciler's checks on manifests, offline, for pull
//! request pipelines. Prints one line per PodIamRole; exits non-zero when any is refused.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args;

use super::manifests::Manifests;
use crate::config::{RoleArgs, resolve};

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
    /// The operator's role flags (`--cluster-name`, `--role-name-prefix`,
    /// `--permissions-boundary`, ...): the checks depend on them as the operator's do.
    #[command(flatten)]
    pub roles: RoleArgs,
    /// The AWS account the roles are made in (the operator's own, 12 digits).
    #[arg(long, env = "IRSA_ACCOUNT_ID")]
    pub account_id: String,
    /// The cluster's OIDC issuer URL (`https://...`): the trust policies name it.
    #[arg(long, env = "IRSA_OIDC_ISSUER")]
    pub oidc_issuer: String,
    /// The account's partition.
    #[arg(long, env = "IRSA_PARTITION", default_value = "aws")]
    pub partition: String,
    /// The namespace of PodIamRoles whose manifest names none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let config = match resolve(
        &args.roles,
        &args.oidc_issuer,
        &args.partition,
        &args.account_id,
    ) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
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
