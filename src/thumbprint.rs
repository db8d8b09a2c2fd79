//! The OIDC provider thumbprint: the SHA-1 fingerprint of the top certificate of the
//! chain the issuer's host serves, as 40 lowercase hex characters.
//!
//! The handshake goes to the issuer URL's own host and port. That is the host the
//! well-known `openssl s_client ... | tail -r | ...` pipeline (seed 001) and the IAM
//! console fingerprint, and on EKS and kube-apiserver the `jwks_uri` lives on the same
//! host; using it means the CLI's output is identical to that pipeline.

use std::{path::Path, sync::Arc, time::Duration};

use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS handshake with an unresponsive host must not stall the operator.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Lowercase hex SHA-1 of a DER certificate.
pub fn sha1_thumbprint(der: &[u8]) -> String {
    hex::encode(Sha1::digest(der))
}

/// `https://host[:port][/path]` -> (host, port).
pub fn issuer_endpoint(issuer: &str) -> Result<(String, u16), String> {
    let rest = issuer
        .strip_prefix("https://")
        .ok_or_else(|| format!("issuer `{issuer}` is not an https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("issuer `{issuer}` has an unclosed IPv6 address"))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("issuer `{issuer}` has an invalid port"))?,
        None => 443,
    };
    if host.is_empty() {
        return Err(format!("issuer `{issuer}` has no host"));
    }
    Ok((host.to_string(), port))
}

/// The system roots plus the certificates in `extra_ca_file`, if any.
fn trust_roots(extra_ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped; a private issuer brings its own CA file.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = extra_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "CA file {} holds no usable certificate",
                path.display()
            ));
        }
    }
    Ok(roots)
}

/// A TLS client trusting the system roots plus `extra_ca_file`, for the issuer's host.
pub(crate) fn client_config(extra_ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(trust_roots(extra_ca_file)?)
        .with_no_client_auth())
}

/// Connects to the issuer's host, verifies its chain, and fingerprints the top certificate served.
pub async fn fetch_thumbprint(
    issuer: &str,
    extra_ca_file: Option<&Path>,
) -> Result<String, String> {
    let (host, port) = issuer_endpoint(issuer)?;
    let config = client_config(extra_ca_file)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| format!("invalid issuer host `{host}`: {e}"))?;
    let handshake = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))
    };
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("TLS handshake with {host}:{port} timed out"))??;
    let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let top = chain
        .last()
        .ok_or_else(|| format!("{host}:{port} served no certificate"))?;
    Ok(sha1_thumbprint(top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ServerConfig;
    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::AsyncWriteExt;

    const CA: &[u8] = include_bytes!("testdata/ca.pem");
    const LEAF: &[u8] = include_bytes!("testdata/leaf.pem");
    const LEAF_KEY: &[u8] = include_bytes!("testdata/leaf.key");
    /// `openssl x509 -in testdata/ca.pem -fingerprint -sha1 -noout`, colons removed, lowercased.
    const CA_SHA1: &str = include_str!("testdata/ca.sha1");

    fn der(pem: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem).unwrap()
    }

    #[test]
    fn fingerprint_matches_openssl() {
        assert_eq!(sha1_thumbprint(&der(CA)), CA_SHA1.trim());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            issuer_endpoint("https://oidc.eks.us-east-1.amazonaws.com/id/A"),
            Ok(("oidc.eks.us-east-1.amazonaws.com".into(), 443))
        );
        assert_eq!(
            issuer_endpoint("https://127.0.0.1:6443"),
            Ok(("127.0.0.1".into(), 6443))
        );
        assert_eq!(
            issuer_endpoint("https://[::1]:8443/x"),
            Ok(("::1".into(), 8443))
        );
        assert!(issuer_endpoint("http://insecure").is_err());
        assert!(issuer_endpoint("https://host:notaport").is_err());
    }

    #[tokio::test]
    async fn fingerprints_the_top_of_the_served_chain() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![der(LEAF), der(CA)],
                PrivateKeyDer::from_pem_slice(LEAF_KEY).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.shutdown().await;
                }
            }
        });
        let ca_file =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/testdata/ca.pem");
        let issuer = format!("https://127.0.0.1:{port}");
        assert_eq!(
            fetch_thumbprint(&issuer, Some(&ca_file)).await.unwrap(),
            CA_SHA1.trim()
        );
        let untrusted = fetch_thumbprint(&issuer, None).await.unwrap_err();
        assert!(untrusted.contains("TLS handshake"), "{untrusted}");
    }
}
