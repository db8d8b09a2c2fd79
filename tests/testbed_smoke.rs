//! Smoke tests of the test bed itself: the API server issues IRSA-shaped tokens, serves
//! OIDC discovery anonymously, and LocalStack stores IAM roles.

mod support;

use kube::{Client, config::AuthInfo};
use serde_json::{Value, json};
use support::{install_crypto, testbed, unique};

#[tokio::test]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn token_request_yields_irsa_claims_verifiable_by_discovery() {
    install_crypto();
    let bed = testbed().await;
    let namespace = unique("smoke");
    bed.create_namespace(&namespace).await;
    bed.create_service_account(&namespace, "app").await;

    let (header, claims) = bed
        .service_account_token(&namespace, "app", "sts.amazonaws.com")
        .await;
    let issuer = &bed.vars["TESTBED_OIDC_ISSUER"];
    assert_eq!(claims["iss"], json!(issuer));
    assert_eq!(
        claims["sub"],
        json!(format!("system:serviceaccount:{namespace}:app"))
    );
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));

    // IAM fetches discovery without credentials, so the test does too.
    let mut anonymous = bed.kube_config.clone();
    anonymous.auth_info = AuthInfo::default();
    let anonymous = Client::try_from(anonymous).unwrap();
    let get = |path: &'static str| {
        let client = anonymous.clone();
        async move {
            let request = http::Request::get(path).body(Vec::new()).unwrap();
            let body = client
                .request_text(request)
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let discovery = get("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], json!(issuer));
    // On kind the issuer is a cluster-internal name, so only the path is checked.
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
    assert!(
        jwks_uri.starts_with("https://") && jwks_uri.ends_with("/openid/v1/jwks"),
        "{jwks_uri}"
    );
    let jwks = get("/openid/v1/jwks").await;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&header["kid"]),
        "token kid {} not in JWKS {kids:?}",
        header["kid"]
    );
}

#[tokio::test]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn localstack_stores_iam_roles() {
    install_crypto();
    let bed = testbed().await;
    let name = unique("smoke-role");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let created = bed
        .iam
        .create_role()
        .role_name(&name)
        .path("/smoke/")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("CreateRole");
    assert!(
        created
            .role()
            .unwrap()
            .arn()
            .ends_with(&format!(":role/smoke/{name}"))
    );
    let read = bed
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .expect("GetRole");
    let document = irsa_core::policy::decode_iam_document(
        read.role().unwrap().assume_role_policy_document().unwrap(),
    )
    .unwrap();
    assert!(irsa_core::policy::semantically_equal(&document, &trust));
    bed.iam
        .delete_role()
        .role_name(&name)
        .send()
        .await
        .expect("DeleteRole");
    let gone = bed.iam.get_role().role_name(&name).send().await;
    assert!(gone.is_err(), "role still exists after DeleteRole");
}
