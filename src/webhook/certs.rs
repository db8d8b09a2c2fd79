//! The webhook's self-signed CA and the serving certificates it signs. Pure: key
//! generation and signing only; where the CA is kept is `tls`'s business.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// The CA outlives many serving certificates; it is replaced only by deleting its Secret.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Serving certificates are short-lived and re-issued from the CA well before they expire.
pub const SERVING_VALIDITY: Duration = Duration::days(90);
/// Re-issue once two thirds of the validity have passed.
pub const SERVING_RENEW_AFTER: Duration = Duration::days(60);
/// Tolerates clocks of the API server a little behind ours.
const BACKDATE: Duration = Duration::minutes(5);
const CA_COMMON_NAME: &str = "irsa-operator-webhook-ca";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("the webhook CA key is not a valid PEM private key: {0}")]
    BadCaKey(#[source] rcgen::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

/// A new self-signed CA valid from `now`.
pub fn new_ca(now: OffsetDateTime) -> Result<PemPair, CertError> {
    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let mut params = ca_params();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key).map_err(CertError::Generate)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The CA's identity as it signs: the same subject and key identifier method every time,
/// so the CA key alone is enough to sign for the stored CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A serving certificate for `hosts` (DNS names or IP addresses), signed by the CA key.
pub fn issue_serving(
    ca_key_pem: &str,
    hosts: &[String],
    now: OffsetDateTime,
) -> Result<PemPair, CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(CertError::BadCaKey)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(CertError::Generate)?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("webhook", String::as_str),
    );
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVING_VALIDITY;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(CertError::Generate)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    };
    use std::sync::Arc;

    fn verify(ca: &str, leaf: &str, host: &str, at: OffsetDateTime) -> Result<(), rustls::Error> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let leaf = CertificateDer::from_pem_slice(leaf.as_bytes()).unwrap();
        let seconds = u64::try_from(at.unix_timestamp()).unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(host.to_string()).unwrap(),
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            )
            .map(|_| ())
    }

    #[test]
    fn serving_certificate_chains_to_the_ca_for_each_host() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca(now).unwrap();
        let hosts = vec!["webhook.irsa.svc".to_string(), "127.0.0.1".to_string()];
        let serving = issue_serving(&ca.key, &hosts, now).unwrap();
        verify(&ca.cert, &serving.cert, "webhook.irsa.svc", now).unwrap();
        verify(&ca.cert, &serving.cert, "127.0.0.1", now).unwrap();
        assert!(verify(&ca.cert, &serving.cert, "other.svc", now).is_err());
    }

    #[test]
    fn serving_certificate_expires_and_other_cas_do_not_trust_it() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca(now).unwrap();
        let hosts = vec!["webhook.irsa.svc".to_string()];
        let serving = issue_serving(&ca.key, &hosts, now).unwrap();
        let later = now + SERVING_VALIDITY + Duration::days(1);
        assert!(verify(&ca.cert, &serving.cert, "webhook.irsa.svc", later).is_err());
        let stranger = new_ca(now).unwrap();
        assert!(verify(&stranger.cert, &serving.cert, "webhook.irsa.svc", now).is_err());
    }

    #[test]
    fn bad_ca_key_is_a_clear_error() {
        let error = issue_serving("not a key", &["x".into()], OffsetDateTime::now_utc());
        assert!(matches!(error, Err(CertError::BadCaKey(_))));
    }
}
