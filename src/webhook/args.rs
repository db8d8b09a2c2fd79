//! Flags of the pod identity webhook (`irsa-operator run --webhook ...`).

use std::{net::SocketAddr, path::PathBuf};

use clap::{ArgAction, Args};

use irsa_core::pod_identity::{DEFAULT_AUDIENCE, DEFAULT_MOUNT_PATH, InjectionDefaults};

/// Every flag has an explicit `webhook-` id: ids are shared with all of `run`'s flags.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Serve the pod identity webhook, which gives pods of annotated ServiceAccounts the
    /// env and token volume EKS's webhook gives them. For clusters other than EKS (kind,
    /// kubeadm, k3s); EKS already runs its own. Every replica serves it.
    #[arg(id = "webhook", long = "webhook", env = "IRSA_WEBHOOK",
          action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub enabled: bool,

    /// Serve the validating webhook too (`/validate`), which refuses at `kubectl apply`
    /// (and `--dry-run=server`) a PodIamRole the operator would refuse: invalid specs, the
    /// built-in deny list and the guardrails. Independent of `--webhook`, so it can run on
    /// EKS. Every replica serves it.
    #[arg(id = "validating-webhook", long = "validating-webhook", env = "IRSA_VALIDATING_WEBHOOK",
          action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub validating: bool,

    /// Address the webhook serves HTTPS on.
    #[arg(
        id = "webhook-addr",
        long = "webhook-addr",
        env = "IRSA_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub addr: SocketAddr,

    /// Directory holding `tls.crt` and `tls.key` (e.g. a cert-manager Secret), re-read
    /// every minute. When unset, the operator keeps its own CA in a Secret, issues the
    /// serving certificate and writes the CA into the webhook configuration's `caBundle`.
    #[arg(
        id = "webhook-cert-dir",
        long = "webhook-cert-dir",
        env = "IRSA_WEBHOOK_CERT_DIR"
    )]
    pub cert_dir: Option<PathBuf>,

    /// The operator's namespace: where the CA Secret lives.
    #[arg(
        id = "webhook-namespace",
        long = "webhook-namespace",
        env = "POD_NAMESPACE"
    )]
    pub namespace: Option<String>,

    /// The Service in front of the webhook; the self-signed certificate is issued for its
    /// DNS names.
    #[arg(
        id = "webhook-service",
        long = "webhook-service",
        env = "IRSA_WEBHOOK_SERVICE",
        default_value = "irsa-operator-webhook"
    )]
    pub service: String,

    /// Extra names (DNS or IP) for the self-signed serving certificate, comma separated.
    #[arg(
        id = "webhook-cert-hosts",
        long = "webhook-cert-hosts",
        env = "IRSA_WEBHOOK_CERT_HOSTS",
        value_delimiter = ','
    )]
    pub cert_hosts: Vec<String>,

    /// Secret holding the self-signed CA (`ca.crt`, `ca.key`); created when missing.
    #[arg(
        id = "webhook-ca-secret",
        long = "webhook-ca-secret",
        env = "IRSA_WEBHOOK_CA_SECRET",
        default_value = "irsa-operator-webhook-ca"
    )]
    pub ca_secret: String,

    /// MutatingWebhookConfiguration whose `caBundle` the operator keeps equal to its CA.
    #[arg(
        id = "webhook-configuration",
        long = "webhook-configuration",
        env = "IRSA_WEBHOOK_CONFIGURATION",
        default_value = "irsa-operator-pod-identity"
    )]
    pub configuration: String,

    /// ValidatingWebhookConfiguration whose `caBundle` the operator keeps equal to its CA,
    /// with `--validating-webhook`.
    #[arg(
        id = "validating-webhook-configuration",
        long = "validating-webhook-configuration",
        env = "IRSA_VALIDATING_WEBHOOK_CONFIGURATION",
        default_value = "irsa-operator-validation"
    )]
    pub validating_configuration: String,

    /// Token audience when the ServiceAccount has no `eks.amazonaws.com/audience`.
    #[arg(id = "webhook-audience", long = "webhook-audience", env = "IRSA_WEBHOOK_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub audience: String,

    /// Token lifetime in seconds when neither the pod nor the ServiceAccount sets
    /// `eks.amazonaws.com/token-expiration` (at least 600).
    #[arg(id = "webhook-token-expiration", long = "webhook-token-expiration", env = "IRSA_WEBHOOK_TOKEN_EXPIRATION", default_value_t = 86_400,
          value_parser = clap::value_parser!(i64).range(600..))]
    pub token_expiration: i64,

    /// Where the token volume is mounted in each container.
    #[arg(id = "webhook-mount-path", long = "webhook-mount-path", env = "IRSA_WEBHOOK_MOUNT_PATH", default_value = DEFAULT_MOUNT_PATH)]
    pub mount_path: String,

    /// Sets `AWS_REGION` and `AWS_DEFAULT_REGION` in containers that set neither.
    #[arg(
        id = "webhook-region",
        long = "webhook-region",
        env = "IRSA_WEBHOOK_REGION"
    )]
    pub region: Option<String>,

    /// Sets `AWS_STS_REGIONAL_ENDPOINTS=regional` unless the ServiceAccount's
    /// `eks.amazonaws.com/sts-regional-endpoints` says otherwise.
    #[arg(
        id = "webhook-sts-regional-endpoints",
        long = "webhook-sts-regional-endpoints",
        env = "IRSA_WEBHOOK_STS_REGIONAL_ENDPOINTS",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub regional_sts: bool,

    /// Extra env vars for every injected container, `NAME=value`, comma separated; e.g.
    /// `AWS_ENDPOINT_URL=http://localstack.localstack:4566` on kind. Off by default.
    #[arg(id = "webhook-extra-env", long = "webhook-extra-env", env = "IRSA_WEBHOOK_EXTRA_ENV", value_delimiter = ',',
          value_parser = parse_env_pair)]
    pub extra_env: Vec<(String, String)>,
}

impl WebhookArgs {
    /// Whether the HTTPS server runs at all: for pods, for PodIamRoles, or both.
    pub fn serves(&self) -> bool {
        self.enabled || self.validating
    }

    pub fn injection_defaults(&self) -> InjectionDefaults {
        InjectionDefaults {
            audience: self.audience.clone(),
            token_expiration: self.token_expiration,
            mount_path: self.mount_path.clone(),
            region: self.region.clone(),
            regional_sts: self.regional_sts,
            extra_env: self.extra_env.clone(),
        }
    }

    /// The names the self-signed certificate covers: the Service's in-cluster DNS names
    /// plus any extra hosts.
    pub fn cert_hosts(&self, namespace: &str) -> Vec<String> {
        let service = &self.service;
        [
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
        .into_iter()
        .chain(self.cert_hosts.iter().cloned())
        .collect()
    }
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if is_env_name(name) => Ok((name.into(), value.into())),
        _ => Err(format!(
            "`{text}` is not NAME=value with a valid env var name"
        )),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: WebhookArgs,
    }

    fn parse(argv: &[&str]) -> Result<WebhookArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn off_by_default_with_eks_defaults() {
        let args = parse(&[]).unwrap();
        assert!(!args.enabled && !args.validating && !args.serves());
        assert_eq!(args.injection_defaults(), InjectionDefaults::default());
        assert_eq!(
            args.cert_hosts("irsa"),
            [
                "irsa-operator-webhook.irsa.svc",
                "irsa-operator-webhook.irsa.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn extra_env_and_bounds() {
        let args = parse(&[
            "--webhook",
            "--webhook-extra-env",
            "AWS_ENDPOINT_URL=http://ls:4566,FOO=a=b",
            "--webhook-cert-hosts",
            "127.0.0.1",
        ])
        .unwrap();
        assert!(args.enabled);
        assert_eq!(
            args.extra_env,
            [
                ("AWS_ENDPOINT_URL".to_string(), "http://ls:4566".to_string()),
                ("FOO".to_string(), "a=b".to_string())
            ]
        );
        assert_eq!(args.cert_hosts("ns").last().unwrap(), "127.0.0.1");
        assert!(parse(&["--webhook-extra-env", "1BAD=x"]).is_err());
        assert!(parse(&["--webhook-extra-env", "NOVALUE"]).is_err());
        assert!(parse(&["--webhook-token-expiration", "60"]).is_err());
        // `--flag=false` too, as the Helm chart renders every flag.
        let off = parse(&["--webhook=false", "--webhook-sts-regional-endpoints=false"]).unwrap();
        assert!(!off.enabled && !off.regional_sts);
        let validating = parse(&["--validating-webhook"]).unwrap();
        assert!(validating.serves() && !validating.enabled);
    }
}
