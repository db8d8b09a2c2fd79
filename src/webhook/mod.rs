//! The admission webhooks, both off by default. The pod identity webhook (EKS-compatible)
//! gives pods of ServiceAccounts annotated with a role `AWS_ROLE_ARN`, the token file env
//! and the projected token volume, as EKS's own webhook gives them. The validating
//! webhook refuses, at apply time, PodIamRoles the operator would refuse.
//!
//! `mutate`, `admission` and `validate` are pure (pod + annotations + settings -> JSON patch), `certs`
//! signs certificates; `cache`, `tls` and `server` are the IO around them. Every replica
//! serves, leader or not: admission must not wait for an election.

pub mod args;
pub mod cache;
pub mod certs;
pub mod server;
pub mod tls;
pub mod validate;

use std::{net::SocketAddr, sync::Arc};

use kube::Client;

pub use args::WebhookArgs;

use crate::metrics::Metrics;
use irsa_core::config::OperatorConfig;
use tls::CertSource;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the ServiceAccount cache (for pods), the certificate and the HTTPS server, all
/// in the background for the life of the process; returns the bound address.
pub async fn start(
    args: &WebhookArgs,
    client: Client,
    namespaces: &[String],
    config: &OperatorConfig,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr, StartError> {
    let source = match &args.cert_dir {
        Some(dir) => CertSource::Mounted { dir: dir.clone() },
        None => {
            let namespace = args.namespace.clone().ok_or(
                "the webhook's self-signed CA needs the operator's namespace: set POD_NAMESPACE \
                 or --webhook-namespace (or mount a certificate with --webhook-cert-dir)",
            )?;
            CertSource::SelfSigned {
                client: client.clone(),
                hosts: args.cert_hosts(&namespace),
                namespace,
                ca_secret: args.ca_secret.clone(),
                mutating: args.enabled.then(|| args.configuration.clone()),
                validating: args
                    .validating
                    .then(|| args.validating_configuration.clone()),
            }
        }
    };
    let tls = tls::server_config(source).await?;
    let admitter = args.enabled.then(|| server::Admitter {
        cache: cache::ServiceAccountCache::start(client.clone(), namespaces),
        defaults: args.injection_defaults(),
        metrics: metrics.clone(),
    });
    let validator = args.validating.then(|| server::Validator {
        client,
        config: config.clone(),
        metrics,
    });
    let router = server::router(admitter, validator);
    Ok(server::serve(args.addr, tls, router).await?)
}
