//! The webhook's serving certificate, kept current while the process runs: either
//! issued from the operator's own CA (kept in a Secret, shared by all replicas, its
//! certificate written into the webhook configuration's `caBundle`), or read from a
//! mounted directory that cert-manager keeps renewed.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    ByteString,
    api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    api::core::v1::Secret,
};
use kube::{
    Api, Client, Resource,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::certs::{self, CertError, PemPair, SERVING_RENEW_AFTER};

/// How often a mounted certificate is re-read: cert-manager renews days ahead.
const MOUNTED_RELOAD: Duration = Duration::from_secs(60);
const CA_CERT_KEY: &str = "ca.crt";
const CA_KEY_KEY: &str = "ca.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("cannot read or create the webhook CA Secret: {0}")]
    Kube(#[source] kube::Error),
    #[error("the webhook CA Secret {0} lacks ca.crt or ca.key")]
    IncompleteCa(String),
    #[error("cannot read the webhook certificate from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook certificate or key is not usable PEM: {0}")]
    Pem(String),
}

/// Where the serving certificate comes from.
pub enum CertSource {
    SelfSigned {
        client: Client,
        namespace: String,
        ca_secret: String,
        /// The MutatingWebhookConfiguration to keep the CA in, when pods are mutated.
        mutating: Option<String>,
        /// The ValidatingWebhookConfiguration to keep the CA in, when PodIamRoles are validated.
        validating: Option<String>,
        hosts: Vec<String>,
    },
    Mounted {
        dir: PathBuf,
    },
}

/// The certificate handshakes use now; replaced in place on renewal.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn set(&self, key: CertifiedKey) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

/// The TLS settings to serve with, and background tasks that renew the certificate (and
/// keep the `caBundle` in sync) for the life of the process.
pub async fn server_config(source: CertSource) -> Result<Arc<ServerConfig>, TlsError> {
    let current = match source {
        CertSource::SelfSigned {
            client,
            namespace,
            ca_secret,
            mutating,
            validating,
            hosts,
        } => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let ca = ensure_ca(&secrets, &ca_secret).await?;
            let serving = certs::issue_serving(&ca.key, &hosts, OffsetDateTime::now_utc())?;
            let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified_key(&serving)?))));
            tokio::spawn(renew_serving(current.clone(), ca.key.clone(), hosts));
            if let Some(name) = mutating {
                let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
                tokio::spawn(keep_ca_bundle(api, name, ca.cert.clone()));
            }
            if let Some(name) = validating {
                let api = Api::<ValidatingWebhookConfiguration>::all(client);
                tokio::spawn(keep_ca_bundle(api, name, ca.cert));
            }
            current
        }
        CertSource::Mounted { dir } => {
            let pair = read_mounted(&dir).await?;
            let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified_key(&pair)?))));
            tokio::spawn(reload_mounted(current.clone(), dir, pair));
            current
        }
    };
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(current);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certified_key(pair: &PemPair) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Pem("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// The CA from its Secret, creating both when missing. Replicas starting together race
/// to create it; the losers read the winner's.
async fn ensure_ca(secrets: &Api<Secret>, name: &str) -> Result<PemPair, TlsError> {
    loop {
        if let Some(secret) = secrets.get_opt(name).await.map_err(TlsError::Kube)? {
            return read_ca(&secret, name);
        }
        let ca = certs::new_ca(OffsetDateTime::now_utc())?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                [
                    (
                        CA_CERT_KEY.to_string(),
                        ByteString(ca.cert.clone().into_bytes()),
                    ),
                    (
                        CA_KEY_KEY.to_string(),
                        ByteString(ca.key.clone().into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                info!(secret = name, "created the webhook CA");
                return Ok(ca);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(TlsError::Kube(error)),
        }
    }
}

fn read_ca(secret: &Secret, name: &str) -> Result<PemPair, TlsError> {
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
            .ok_or_else(|| TlsError::IncompleteCa(name.into()))
    };
    Ok(PemPair {
        cert: field(CA_CERT_KEY)?,
        key: field(CA_KEY_KEY)?,
    })
}

/// Re-issues the serving certificate from the CA long before it expires.
async fn renew_serving(current: Arc<CurrentCert>, ca_key: String, hosts: Vec<String>) {
    let renew_after = Duration::from_secs(SERVING_RENEW_AFTER.whole_seconds().unsigned_abs());
    loop {
        tokio::time::sleep(renew_after).await;
        match certs::issue_serving(&ca_key, &hosts, OffsetDateTime::now_utc())
            .map_err(TlsError::from)
            .and_then(|pair| certified_key(&pair))
        {
            Ok(key) => {
                current.set(key);
                info!("renewed the webhook serving certificate");
            }
            Err(error) => warn!(%error, "cannot renew the webhook serving certificate"),
        }
    }
}

/// A kind of webhook configuration: a list of webhooks, each with a `clientConfig`.
trait WebhookConfiguration:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig>;
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|webhook| &mut webhook.client_config).collect()
    }
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|webhook| &mut webhook.client_config).collect()
    }
}

/// Watches the webhook configuration and writes the CA into every webhook's `caBundle`
/// whenever it differs, e.g. after the manifest is re-applied with an empty one.
async fn keep_ca_bundle<K: WebhookConfiguration>(api: Api<K>, name: String, ca_cert: String) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = std::pin::pin!(
        watcher(api.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    while let Some(event) = changes.next().await {
        let configuration = match event {
            Ok(configuration) => configuration,
            Err(error) => {
                warn!(%error, configuration = %name, "cannot watch the webhook configuration");
                continue;
            }
        };
        if let Some(updated) = with_ca_bundle(configuration, &ca_cert) {
            // A conflict brings the newer object through the watch, and another try.
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => info!(configuration = %name, "wrote the webhook CA into caBundle"),
                Err(error) => warn!(%error, configuration = %name, "cannot write caBundle"),
            }
        }
    }
}

/// The configuration with `ca_cert` as every webhook's `caBundle`, or `None` if it has it.
fn with_ca_bundle<K: WebhookConfiguration>(mut configuration: K, ca_cert: &str) -> Option<K> {
    let bundle = ByteString(ca_cert.as_bytes().to_vec());
    let mut changed = false;
    for client_config in configuration.client_configs() {
        if client_config.ca_bundle.as_ref() != Some(&bundle) {
            client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    changed.then_some(configuration)
}

async fn read_mounted(dir: &std::path::Path) -> Result<PemPair, TlsError> {
    let read = |file: &str| {
        let path = dir.join(file);
        async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| TlsError::Read { path, source })
        }
    };
    Ok(PemPair {
        cert: read("tls.crt").await?,
        key: read("tls.key").await?,
    })
}

/// Re-reads the mounted files and switches to them once they changed and are valid.
async fn reload_mounted(current: Arc<CurrentCert>, dir: PathBuf, mut loaded: PemPair) {
    loop {
        tokio::time::sleep(MOUNTED_RELOAD).await;
        let pair = match read_mounted(&dir).await {
            Ok(pair) if pair != loaded => pair,
            Ok(_) => continue,
            Err(error) => {
                warn!(%error, "cannot re-read the webhook certificate");
                continue;
            }
        };
        match certified_key(&pair) {
            Ok(key) => {
                current.set(key);
                loaded = pair;
                info!(dir = %dir.display(), "reloaded the webhook certificate");
            }
            Err(error) => warn!(%error, "the new webhook certificate is not usable yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ca_bundle_is_written_once() {
        let configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "webhooks": [
                {"name": "a.irsa.dev", "clientConfig": {"url": "https://x"},
                 "admissionReviewVersions": ["v1"], "sideEffects": "None"},
                {"name": "b.irsa.dev", "clientConfig": {"url": "https://y", "caBundle": "b2xk"},
                 "admissionReviewVersions": ["v1"], "sideEffects": "None"}
            ]
        }))
        .unwrap();
        let updated = with_ca_bundle(configuration, "CA").unwrap();
        for webhook in updated.webhooks.as_ref().unwrap() {
            assert_eq!(
                webhook.client_config.ca_bundle,
                Some(ByteString(b"CA".to_vec()))
            );
        }
        assert!(with_ca_bundle(updated, "CA").is_none());

        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "v"},
            "webhooks": [{"name": "v.irsa.dev", "clientConfig": {"url": "https://z"},
                          "admissionReviewVersions": ["v1"], "sideEffects": "None"}]
        }))
        .unwrap();
        let updated = with_ca_bundle(validating, "CA").unwrap();
        let webhooks = updated.webhooks.as_ref().unwrap();
        assert_eq!(
            webhooks[0].client_config.ca_bundle,
            Some(ByteString(b"CA".to_vec()))
        );
    }

    #[test]
    fn certified_key_needs_a_certificate_and_key() {
        let now = OffsetDateTime::now_utc();
        let ca = certs::new_ca(now).unwrap();
        let serving = certs::issue_serving(&ca.key, &["h".into()], now).unwrap();
        assert!(certified_key(&serving).is_ok());
        let no_cert = PemPair {
            cert: String::new(),
            key: serving.key.clone(),
        };
        assert!(matches!(certified_key(&no_cert), Err(TlsError::Pem(_))));
    }
}
