//! Anonymous HTTPS GETs of the issuer's discovery document and JWKS, as STS makes them.

use std::{path::Path, sync::Arc, time::Duration};

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::thumbprint::{client_config, issuer_endpoint};

/// STS gives up on a slow issuer quickly too.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets are a few KiB.
const MAX_BODY: u64 = 1 << 20;

/// GETs `url` (https only) without credentials and parses the JSON body of a 200.
pub async fn get_json(url: &str, extra_ca_file: Option<&Path>) -> Result<Value, String> {
    let (host, port) = issuer_endpoint(url)?;
    let path = url
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let config = client_config(extra_ca_file)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|e| format!("invalid host `{host}`: {e}"))?;
    let exchange = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
        // HTTP/1.0: the server closes the connection after one plain (unchunked) body.
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json, application/jwk-set+json\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        tls.take(MAX_BODY)
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url} sent no HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{url} answered `{status}`"));
    }
    serde_json::from_str(body).map_err(|e| format!("{url} is not JSON: {e}"))
}
