//! Discovers the cluster's OIDC issuer from the API server, as IAM will see it.

use kube::Client;

/// Reads `issuer` from the API server's `/.well-known/openid-configuration`.
pub async fn discover_issuer(client: &Client) -> Result<String, String> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let body = client.request_text(request).await.map_err(|e| {
        format!("cannot read /.well-known/openid-configuration from the API server ({e}); set --oidc-issuer")
    })?;
    issuer_from_discovery(&body)
}

fn issuer_from_discovery(body: &str) -> Result<String, String> {
    let document: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("the OIDC discovery document is not JSON: {e}"))?;
    document["issuer"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the OIDC discovery document has no `issuer`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_issuer() {
        let body = r#"{"issuer":"https://127.0.0.1:6443","jwks_uri":"https://127.0.0.1:6443/openid/v1/jwks"}"#;
        assert_eq!(
            issuer_from_discovery(body).unwrap(),
            "https://127.0.0.1:6443"
        );
        assert!(issuer_from_discovery("{}").is_err());
        assert!(issuer_from_discovery("<html>").is_err());
    }
}
