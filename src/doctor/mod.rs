//! `irsa-operator doctor`: walks the IRSA chain for one ServiceAccount, pod or PodIamRole
//! and reports every link, pass or fail, each failure with its fix.
//!
//! `checks` and `report` are pure; this module gathers the facts (Kubernetes, IAM, the
//! issuer over HTTPS) and `fetch` reads the issuer as STS does.

pub mod args;
pub mod checks;
pub mod fetch;
pub mod report;

use std::{path::Path, sync::Arc};

use base64::Engine;
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Pod, ServiceAccount},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};

use args::Target;
pub use args::{DoctorArgs, Output};
use checks::Owner;
use report::{Check, Report};

use crate::{
    iam::{IamApi, aws::AwsIam},
    k8s::FIELD_MANAGER,
    metrics::Metrics,
    thumbprint::fetch_thumbprint,
};
use irsa_api::PodIamRole;
use irsa_core::account::AccountName;
use irsa_core::pod_identity::{AUDIENCE_ANNOTATION, DEFAULT_AUDIENCE, ROLE_ARN_ANNOTATION};

/// The freshly minted token lives only for this check.
const TOKEN_SECONDS: i64 = 600;

/// Runs every check; `Err` only when doctor itself cannot run (bad target, no cluster).
pub async fn run(args: &DoctorArgs) -> Result<Report, String> {
    let target = Target::parse(&args.target)?;
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let iam = AwsIam::new(
        aws_sdk_iam::Client::new(&aws),
        Arc::new(Metrics::default()),
        AccountName::Home,
    );
    let namespace = &args.namespace;
    let label = format!("{namespace}/{}", args.target);
    let (sa_name, pod) = resolve(&client, namespace, &target).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let Some(sa) = accounts
        .get_opt(&sa_name)
        .await
        .map_err(|e| e.to_string())?
    else {
        let missing = Check::fail(
            "serviceaccount",
            format!("ServiceAccount {namespace}/{sa_name} does not exist"),
            format!("create it: kubectl -n {namespace} create serviceaccount {sa_name}"),
        );
        return Ok(Report::new(label, vec![missing]));
    };
    let mut found = Vec::new();
    let owners = owners(&client, namespace, &sa_name).await?;
    found.push(checks::owner(&sa_name, &owners));
    let owner_arn = match owners.as_slice() {
        [only] => only.role_arn.clone(),
        _ => None,
    };
    let annotated = sa.annotations().get(ROLE_ARN_ANNOTATION).cloned();
    found.push(checks::annotation(
        &sa_name,
        annotated.as_deref(),
        owner_arn.as_deref(),
    ));
    let role_arn = annotated.clone().or(owner_arn);
    let audience = sa
        .annotations()
        .get(AUDIENCE_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_AUDIENCE.into());
    let token = mint_token(&accounts, &sa_name, &audience).await;
    found.push(match &token {
        Ok((_, claims)) => Check::pass(
            "token",
            format!(
                "TokenRequest for audience {audience}: iss {}",
                claims["iss"]
            ),
        ),
        Err(error) => Check::fail(
            "token",
            format!("cannot mint a token for {sa_name}: {error}"),
            "run doctor with permission to create serviceaccounts/token",
        ),
    });
    let token = token.ok();
    let ca_file = args.oidc_ca_file.as_deref();
    match &role_arn {
        Some(role_arn) => {
            found.extend(iam_checks(&iam, role_arn, &audience, token.as_ref(), ca_file).await)
        }
        None => {
            for name in ["role", "trust", "provider", "audience", "thumbprint"] {
                found.push(Check::skip(name, "a role ARN"));
            }
        }
    }
    match &token {
        Some((header, claims)) => found.extend(issuer_checks(header, claims, ca_file).await),
        None => {
            found.push(Check::skip("discovery", "a token"));
            found.push(Check::skip("jwks", "a token"));
        }
    }
    if let Some(pod) = pod {
        found.push(match &role_arn {
            Some(role_arn) => checks::pod_identity(
                &pod,
                role_arn,
                checks::annotated_at(sa.managed_fields(), FIELD_MANAGER),
            ),
            None => Check::skip("pod", "a role ARN"),
        });
    }
    Ok(Report::new(label, found))
}

/// The ServiceAccount the target concerns, and the pod when the target is one.
async fn resolve(
    client: &Client,
    namespace: &str,
    target: &Target,
) -> Result<(String, Option<Pod>), String> {
    match target {
        Target::ServiceAccount(name) => Ok((name.clone(), None)),
        Target::Pod(name) => {
            let pod = Api::<Pod>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| format!("cannot read pod {namespace}/{name}: {e}"))?;
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            Ok((sa, Some(pod)))
        }
        Target::PodIamRole(name) => {
            let role = Api::<PodIamRole>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| format!("cannot read PodIamRole {namespace}/{name}: {e}"))?;
            Ok((role.spec.service_account_name, None))
        }
    }
}

async fn owners(client: &Client, namespace: &str, sa: &str) -> Result<Vec<Owner>, String> {
    let roles = Api::<PodIamRole>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list PodIamRoles in {namespace}: {e}"))?;
    Ok(roles
        .items
        .into_iter()
        .filter(|role| role.spec.service_account_name == sa)
        .map(|role| {
            let status = role.status.clone().unwrap_or_default();
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            Owner {
                name: role.name_any(),
                ready: ready.is_some_and(|c| c.status == "True"),
                detail: ready.map_or("no Ready condition yet".into(), |c| {
                    format!("{}: {}", c.reason, c.message)
                }),
                role_arn: status.role_arn,
            }
        })
        .collect())
}

/// A token as a pod would get it: (JWT header, claims).
async fn mint_token(
    accounts: &Api<ServiceAccount>,
    name: &str,
    audience: &str,
) -> Result<(Value, Value), String> {
    let request: TokenRequest = serde_json::from_value(
        json!({"spec": {"audiences": [audience], "expirationSeconds": TOKEN_SECONDS}}),
    )
    .map_err(|e| e.to_string())?;
    let issued = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| e.to_string())?;
    let token = issued
        .status
        .and_then(|s| s.token)
        .ok_or("the TokenRequest returned no token")?;
    let mut parts = token.split('.');
    let mut decode = || -> Result<Value, String> {
        let part = parts.next().ok_or("the token is not a JWT")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    Ok((decode()?, decode()?))
}

async fn iam_checks(
    iam: &AwsIam,
    role_arn: &str,
    audience: &str,
    token: Option<&(Value, Value)>,
    ca_file: Option<&Path>,
) -> Vec<Check> {
    let mut found = Vec::new();
    let role = iam.get_role(checks::role_name(role_arn)).await;
    found.push(checks::role(
        role_arn,
        role.as_ref()
            .map(Option::is_some)
            .map_err(|e| e.message.clone()),
    ));
    found.push(match (role.ok().flatten(), token) {
        (Some(role), Some((_, claims))) => checks::trust(role_arn, &role.trust_policy, claims),
        (None, _) => Check::skip("trust", "the role"),
        (_, None) => Check::skip("trust", "a token"),
    });
    let Some((_, claims)) = token else {
        for name in ["provider", "audience", "thumbprint"] {
            found.push(Check::skip(name, "a token"));
        }
        return found;
    };
    let issuer = claims["iss"].as_str().unwrap_or_default();
    let Some(provider_arn) = checks::provider_arn(role_arn, issuer) else {
        found.push(Check::fail(
            "provider",
            format!("{role_arn} is not a role ARN"),
            "fix the eks.amazonaws.com/role-arn annotation",
        ));
        return found;
    };
    let observed = match iam.get_oidc_provider(&provider_arn).await {
        Ok(observed) => observed,
        Err(error) => {
            found.push(Check::fail(
                "provider",
                format!("cannot read {provider_arn}: {}", error.message),
                "run doctor with credentials allowed iam:GetOpenIDConnectProvider",
            ));
            return found;
        }
    };
    found.push(checks::provider(&provider_arn, issuer, observed.as_ref()));
    match observed {
        Some(observed) => {
            found.push(checks::provider_audience(
                &provider_arn,
                audience,
                &observed,
            ));
            let current = fetch_thumbprint(issuer, ca_file).await;
            found.push(checks::provider_thumbprint(
                &provider_arn,
                &observed,
                current.as_deref().map_err(String::as_str),
            ));
        }
        None => {
            found.push(Check::skip("audience", "the provider"));
            found.push(Check::skip("thumbprint", "the provider"));
        }
    }
    found
}

async fn issuer_checks(header: &Value, claims: &Value, ca_file: Option<&Path>) -> Vec<Check> {
    let issuer = claims["iss"].as_str().unwrap_or_default();
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document = fetch::get_json(&url, ca_file).await;
    let (check, jwks_uri) = checks::discovery(issuer, document.as_ref().map_err(String::as_str));
    let Some(jwks_uri) = jwks_uri else {
        return vec![check, Check::skip("jwks", "the discovery document")];
    };
    let keys = fetch::get_json(&jwks_uri, ca_file).await;
    let kid = header["kid"].as_str().unwrap_or_default();
    vec![
        check,
        checks::jwks(&jwks_uri, kid, keys.as_ref().map_err(String::as_str)),
    ]
}
