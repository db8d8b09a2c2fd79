use std::process::ExitCode;

use clap::{Parser, Subcommand};
use irsa_operator::{config::RunArgs, controller, crd::PodIamRole, telemetry};

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
    Run(RunArgs),
    /// Print the PodIamRole CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", PodIamRole::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            // kube and the AWS SDK share rustls; pin its one crypto provider before either starts.
            rustls::crypto::aws_lc_rs::default_provider()
                .install_default()
                .expect("no other crypto provider is installed this early");
            telemetry::init(args.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(controller::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "irsa-operator failed to start");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
