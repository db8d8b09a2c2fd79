use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use irsa_operator::{
    cli::{
        iam_policy::{self, IamPolicyArgs},
        plugin,
        validate::{self, ValidateArgs},
    },
    config::RunArgs,
    controller, doctor, telemetry, thumbprint,
};

/// Kubernetes operator that turns PodIamRole objects into IAM roles for service accounts.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Check PodIamRole manifests offline, as the operator would: spec validation, the
    /// built-in deny list and the guardrails. Exits 1 if any is refused.
    Validate(ValidateArgs),
    /// Print the CustomResourceDefinitions (PodIamRole, PodIamRoleGuardrail,
    /// PodIamRoleAccount) as YAML.
    Crd,
    /// Print the IAM policy the operator's own role needs, as JSON: pass the same cluster
    /// name, role path, OIDC provider mode and permissions boundary as to `run`. The
    /// management role of a target account (PodIamRoleAccount) needs the same policy (with
    /// that account's `oidcProvider` mode); `--management-trust` prints its trust policy
    /// instead.
    IamPolicy(IamPolicyArgs),
    /// Print the IAM OIDC provider thumbprint of an issuer: the SHA-1 of the top
    /// certificate its host serves, as 40 lowercase hex characters.
    Thumbprint {
        /// The issuer URL, e.g. https://oidc.eks.us-east-1.amazonaws.com/id/ABC.
        issuer: String,
        /// Extra CA certificates (PEM) to trust, for private issuers.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Check every link of the IRSA chain for one ServiceAccount, pod or PodIamRole
    /// (`-n NS sa/NAME`, `pod/NAME`, `pir/NAME`): one line per check, each failure with
    /// its fix. Exits 1 when a check fails, 2 when doctor cannot run.
    Doctor(doctor::DoctorArgs),
}

/// Parses the command line. Started as `kubectl-irsa` (kubectl's `irsa` plugin), the usage
/// lines say `kubectl irsa`; the commands are the same.
fn parse() -> Cli {
    let mut command = Cli::command();
    if let Some(name) = std::env::args_os()
        .next()
        .and_then(|argv0| plugin::plugin_bin_name(&argv0))
    {
        command = command.bin_name(name);
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

fn main() -> ExitCode {
    let cli = parse();
    // kube and the AWS SDK share rustls; pin its one crypto provider before either starts.
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .expect("no other crypto provider is installed this early");
    match cli.command {
        Command::Crd => {
            let documents: Vec<String> = irsa_api::crd_files()
                .into_iter()
                .map(|(_, yaml)| yaml)
                .collect();
            print!("{}", documents.join("---\n"));
            ExitCode::SUCCESS
        }
        Command::IamPolicy(args) => iam_policy::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Thumbprint { issuer, ca_file } => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(thumbprint::fetch_thumbprint(&issuer, ca_file.as_deref())) {
                Ok(thumbprint) => {
                    println!("{thumbprint}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Doctor(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(doctor::run(&args)) {
                Ok(report) => {
                    match args.output {
                        doctor::Output::Text => print!("{}", report.text()),
                        doctor::Output::Json => println!(
                            "{}",
                            serde_json::to_string_pretty(&report).expect("a report serializes")
                        ),
                    }
                    if report.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(controller::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "irsa-operator failed to start");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
