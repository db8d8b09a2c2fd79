//! The pod identity mutating admission webhook, EKS-compatible and off by default: pods
//! of ServiceAccounts annotated with a role get `AWS_ROLE_ARN`, the token file env and
//! the projected token volume, as EKS's own webhook gives them.
//!
//! `mutate` and `admission` are pure (pod + annotations + settings -> JSON patch), `certs`
//! signs certificates; `cache`, `tls` and `server` are the IO around them. Every replica
//! serves, leader or not: admission must not wait for an election.

pub mod admission;
pub mod args;
pub mod cache;
pub mod certs;
pub mod mutate;
pub mod server;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use kube::Client;

pub use args::WebhookArgs;

use crate::metrics::Metrics;
use tls::CertSource;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the ServiceAccount cache, the certificate and the HTTPS server, all in the
/// background for the life of the process; returns the bound address.
pub async fn start(
    args: &WebhookArgs,
    client: Client,
    namespaces: &[String],
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
                configuration: args.configuration.clone(),
            }
        }
    };
    let tls = tls::server_config(source).await?;
    let admitter = Arc::new(server::Admitter {
        cache: cache::ServiceAccountCache::start(client, namespaces),
        defaults: args.injection_defaults(),
        metrics,
    });
    Ok(server::serve(args.addr, tls, admitter).await?)
}
