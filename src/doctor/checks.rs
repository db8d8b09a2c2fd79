//! Each link of the IRSA chain as one check over facts `doctor` gathered. Pure.

use k8s_openapi::{
    api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry, jiff::Timestamp,
};
use serde_json::Value;

use super::report::Check;
use irsa_core::{
    oidc::ObservedProvider,
    pod_identity::{ROLE_ARN_ANNOTATION, VOLUME_NAME, lacking_identity},
    trust,
};

/// A PodIamRole naming the ServiceAccount, as far as `doctor` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub ready: bool,
    /// The Ready condition's reason and message.
    pub detail: String,
    pub role_arn: Option<String>,
}

pub fn owner(sa: &str, owners: &[Owner]) -> Check {
    match owners {
        [] => Check::fail(
            "owner",
            format!("no PodIamRole names ServiceAccount {sa}"),
            format!("create a PodIamRole with spec.serviceAccountName: {sa}"),
        ),
        [owner] if owner.ready => Check::pass(
            "owner",
            format!("PodIamRole {} owns it and is Ready", owner.name),
        ),
        [owner] => Check::fail(
            "owner",
            format!("PodIamRole {} is not Ready: {}", owner.name, owner.detail),
            format!(
                "kubectl describe pir {} and fix what its Ready condition says",
                owner.name
            ),
        ),
        many => Check::fail(
            "owner",
            format!(
                "{} PodIamRoles name ServiceAccount {sa}: {}",
                many.len(),
                many.iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "keep one PodIamRole per ServiceAccount; the others report ServiceAccountInUse",
        ),
    }
}

pub fn annotation(sa: &str, annotated: Option<&str>, owner_arn: Option<&str>) -> Check {
    match (annotated, owner_arn) {
        (None, _) => Check::fail(
            "annotation",
            format!("ServiceAccount {sa} has no {ROLE_ARN_ANNOTATION}"),
            "the operator sets it once its PodIamRole is Ready: check the owner, or that the \
             operator runs and watches this namespace",
        ),
        (Some(have), Some(want)) if have != want => Check::fail(
            "annotation",
            format!("{ROLE_ARN_ANNOTATION} is {have}, but its PodIamRole's role is {want}"),
            "remove the annotation or the other writer (GitOps, Helm); the operator then sets it",
        ),
        (Some(have), _) => Check::pass("annotation", format!("{ROLE_ARN_ANNOTATION}: {have}")),
    }
}

/// `arn:aws:iam::1:role/path/name` -> `name`.
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// The provider STS looks for: the issuer's, in the role's own account and partition.
pub fn provider_arn(role_arn: &str, issuer: &str) -> Option<String> {
    let mut parts = role_arn.split(':');
    let (_, partition, _, _, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let host_path = issuer.trim_start_matches("https://").trim_end_matches('/');
    Some(format!(
        "arn:{partition}:iam::{account}:oidc-provider/{host_path}"
    ))
}

pub fn role(role_arn: &str, exists: Result<bool, String>) -> Check {
    match exists {
        Ok(true) => Check::pass("role", format!("role {role_arn} exists")),
        Ok(false) => Check::fail(
            "role",
            format!("role {role_arn} does not exist in IAM"),
            "something deleted it behind the operator's back (see CloudTrail); the operator \
             recreates it at its next resync, or touch the PodIamRole",
        ),
        Err(error) => Check::fail(
            "role",
            format!("cannot read role {role_arn}: {error}"),
            "run doctor with credentials allowed iam:GetRole",
        ),
    }
}

pub fn trust(role_arn: &str, trust_policy: &Value, claims: &Value) -> Check {
    match trust::evaluate(trust_policy, claims) {
        Ok(()) => Check::pass(
            "trust",
            format!(
                "the trust policy admits a fresh token (sub {}, aud {})",
                claims["sub"], claims["aud"]
            ),
        ),
        Err(reason) => Check::fail(
            "trust",
            format!("the trust policy of {role_arn} refuses this ServiceAccount's token: {reason}"),
            "the operator rewrites the trust policy at its next resync; if it keeps failing, \
             compare the PodIamRole's audience with the ServiceAccount's eks.amazonaws.com/audience",
        ),
    }
}

pub fn provider(arn: &str, issuer: &str, observed: Option<&ObservedProvider>) -> Check {
    let issuer_host_path = issuer.trim_start_matches("https://").trim_end_matches('/');
    match observed {
        None => Check::fail(
            "provider",
            format!("IAM OIDC provider {arn} does not exist"),
            "create it (eksctl utils associate-iam-oidc-provider) or run the operator with \
             --oidc-provider=manage",
        ),
        Some(found)
            if found
                .url
                .trim_start_matches("https://")
                .trim_end_matches('/')
                != issuer_host_path =>
        {
            Check::fail(
                "provider",
                format!(
                    "provider {arn} has URL {}, the token's issuer is {issuer}",
                    found.url
                ),
                "recreate the provider with the cluster's issuer URL",
            )
        }
        Some(_) => Check::pass("provider", format!("{arn} exists for {issuer}")),
    }
}

pub fn provider_audience(arn: &str, audience: &str, observed: &ObservedProvider) -> Check {
    if observed.client_ids.contains(audience) {
        Check::pass(
            "audience",
            format!("the provider accepts audience {audience}"),
        )
    } else {
        Check::fail(
            "audience",
            format!(
                "provider {arn} lacks client ID {audience} (it has {:?})",
                observed.client_ids
            ),
            format!(
                "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn \
                 {arn} --client-id {audience}"
            ),
        )
    }
}

pub fn provider_thumbprint(
    arn: &str,
    observed: &ObservedProvider,
    current: Result<&str, &str>,
) -> Check {
    match current {
        Ok(current)
            if observed
                .thumbprints
                .iter()
                .any(|t| t.eq_ignore_ascii_case(current)) =>
        {
            Check::pass(
                "thumbprint",
                format!("the provider trusts the issuer's chain ({current})"),
            )
        }
        Ok(current) => Check::fail(
            "thumbprint",
            format!(
                "provider {arn} has thumbprints {:?}, the issuer now serves {current}",
                observed.thumbprints
            ),
            format!(
                "aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn \
                 {arn} --thumbprint-list {current}"
            ),
        ),
        Err(error) => Check::fail(
            "thumbprint",
            format!("cannot fingerprint the issuer's TLS chain: {error}"),
            "pass --oidc-ca-file for a private issuer, or check that the issuer is reachable",
        ),
    }
}

/// The discovery document names the issuer itself; returns its `jwks_uri` on success.
pub fn discovery(issuer: &str, document: Result<&Value, &str>) -> (Check, Option<String>) {
    let document = match document {
        Ok(document) => document,
        Err(error) => {
            return (
                Check::fail(
                    "discovery",
                    format!("{issuer}/.well-known/openid-configuration is not readable: {error}"),
                    "STS must read it anonymously over the internet: publish it (e.g. an S3 \
                     bucket) or allow system:unauthenticated to read it",
                ),
                None,
            );
        }
    };
    let jwks_uri = document["jwks_uri"].as_str().map(str::to_string);
    if document["issuer"].as_str() != Some(issuer) {
        let check = Check::fail(
            "discovery",
            format!(
                "the discovery document names issuer {}, not {issuer}",
                document["issuer"]
            ),
            "set the API server's --service-account-issuer to the URL the document is served at",
        );
        return (check, None);
    }
    match jwks_uri {
        Some(uri) => (
            Check::pass(
                "discovery",
                format!("discovery document names jwks_uri {uri}"),
            ),
            Some(uri),
        ),
        None => (
            Check::fail(
                "discovery",
                "the discovery document has no jwks_uri",
                "serve a complete discovery document",
            ),
            None,
        ),
    }
}

pub fn jwks(uri: &str, kid: &str, keys: Result<&Value, &str>) -> Check {
    let keys = match keys {
        Ok(keys) => keys,
        Err(error) => {
            return Check::fail(
                "jwks",
                format!("{uri} is not readable: {error}"),
                "STS must read the JWKS anonymously; publish it where jwks_uri points",
            );
        }
    };
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|key| key["kid"].as_str())
        .collect();
    if kids.contains(&kid) {
        Check::pass("jwks", format!("the JWKS holds the token's key {kid}"))
    } else {
        Check::fail(
            "jwks",
            format!("the JWKS at {uri} lacks the token's key {kid} (it has {kids:?})"),
            "republish the JWKS after rotating the service account signing key",
        )
    }
}

/// When the operator's field manager last wrote the role annotation, from managedFields.
pub fn annotated_at(managed_fields: &[ManagedFieldsEntry], manager: &str) -> Option<Timestamp> {
    let field = format!("f:{ROLE_ARN_ANNOTATION}");
    managed_fields
        .iter()
        .filter(|entry| entry.manager.as_deref() == Some(manager))
        .filter(|entry| {
            entry.fields_v1.as_ref().is_some_and(|fields| {
                fields.0["f:metadata"]["f:annotations"]
                    .get(&field)
                    .is_some()
            })
        })
        .filter_map(|entry| entry.time.as_ref().map(|t| t.0))
        .max()
}

/// Every container the webhook should have injected carries the role and the token.
pub fn pod_identity(pod: &Pod, role_arn: &str, annotated_at: Option<Timestamp>) -> Check {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let lacking = lacking_identity(pod, role_arn);
    if lacking.is_empty() {
        return Check::pass(
            "pod",
            format!("every container of pod {name} has AWS_ROLE_ARN {role_arn} and the token"),
        );
    }
    let missing = format!(
        "pod {name} lacks AWS_ROLE_ARN={role_arn}, the token file env or the {VOLUME_NAME} \
         mount or volume in: {}",
        lacking.join(", ")
    );
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (created, annotated_at) {
        // Both have whole seconds: the same second counts as before, since a pod admitted
        // after the annotation would have the identity.
        (Some(created), Some(annotated)) if created <= annotated => Check::fail(
            "pod",
            format!(
                "{missing}: it was created at {created}, not after the annotation ({annotated})"
            ),
            "restart it (kubectl rollout restart its workload, or delete the pod)",
        ),
        _ => Check::fail(
            "pod",
            missing,
            "no pod identity webhook mutated it: on EKS check the pod-identity-webhook, \
             elsewhere run the operator with --webhook (config/webhook); then restart the pod",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;
    use serde_json::json;
    use std::collections::BTreeSet;

    const ARN: &str = "arn:aws:iam::111122223333:role/irsa/prod/app";
    const ISSUER: &str = "https://oidc.example.com/id/A";

    fn owner_of(ready: bool) -> Owner {
        Owner {
            name: "app".into(),
            ready,
            detail: "Synced".into(),
            role_arn: Some(ARN.into()),
        }
    }

    fn observed() -> ObservedProvider {
        ObservedProvider {
            url: "oidc.example.com/id/A".into(),
            client_ids: BTreeSet::from(["sts.amazonaws.com".to_string()]),
            thumbprints: vec!["ab".repeat(20)],
            tags: Default::default(),
        }
    }

    #[test]
    fn owner_and_annotation() {
        assert_eq!(owner("app", &[owner_of(true)]).status, Status::Pass);
        assert_eq!(owner("app", &[owner_of(false)]).status, Status::Fail);
        assert_eq!(owner("app", &[]).status, Status::Fail);
        assert!(
            owner("app", &[owner_of(true), owner_of(true)])
                .message
                .contains("2 PodIamRoles")
        );
        assert_eq!(annotation("app", Some(ARN), Some(ARN)).status, Status::Pass);
        assert_eq!(annotation("app", Some(ARN), None).status, Status::Pass);
        assert_eq!(annotation("app", None, Some(ARN)).status, Status::Fail);
        assert_eq!(
            annotation("app", Some("other"), Some(ARN)).status,
            Status::Fail
        );
    }

    #[test]
    fn names_and_provider_arn() {
        assert_eq!(role_name(ARN), "app");
        assert_eq!(
            provider_arn(ARN, ISSUER).as_deref(),
            Some("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/A")
        );
        assert_eq!(provider_arn("garbage", ISSUER), None);
    }

    #[test]
    fn provider_links() {
        let arn = "arn:aws:iam::1:oidc-provider/oidc.example.com/id/A";
        assert_eq!(
            provider(arn, ISSUER, Some(&observed())).status,
            Status::Pass
        );
        assert_eq!(provider(arn, ISSUER, None).status, Status::Fail);
        let mut elsewhere = observed();
        elsewhere.url = "other".into();
        assert_eq!(provider(arn, ISSUER, Some(&elsewhere)).status, Status::Fail);
        assert_eq!(
            provider_audience(arn, "sts.amazonaws.com", &observed()).status,
            Status::Pass
        );
        let missing = provider_audience(arn, "custom", &observed());
        assert!(missing.fix.unwrap().contains("--client-id custom"));
        let current = "AB".repeat(20);
        assert_eq!(
            provider_thumbprint(arn, &observed(), Ok(&current)).status,
            Status::Pass
        );
        assert_eq!(
            provider_thumbprint(arn, &observed(), Ok("cd")).status,
            Status::Fail
        );
        assert_eq!(
            provider_thumbprint(arn, &observed(), Err("down")).status,
            Status::Fail
        );
    }

    #[test]
    fn discovery_and_jwks() {
        let good = json!({"issuer": ISSUER, "jwks_uri": "https://x/jwks"});
        let (check, uri) = discovery(ISSUER, Ok(&good));
        assert_eq!(
            (check.status, uri.as_deref()),
            (Status::Pass, Some("https://x/jwks"))
        );
        let (check, uri) = discovery(ISSUER, Ok(&json!({"issuer": "https://other"})));
        assert_eq!((check.status, uri), (Status::Fail, None));
        assert_eq!(discovery(ISSUER, Err("404")).0.status, Status::Fail);
        let keys = json!({"keys": [{"kid": "k1"}]});
        assert_eq!(jwks("u", "k1", Ok(&keys)).status, Status::Pass);
        assert_eq!(jwks("u", "k2", Ok(&keys)).status, Status::Fail);
    }

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn pod_identity_and_restart_advice() {
        let injected = pod(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-02T00:00:00Z",
                         "annotations": {"eks.amazonaws.com/skip-containers": "tool"}},
            "spec": {"containers": [
                {"name": "app", "env": [{"name": "AWS_ROLE_ARN", "value": ARN},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"}],
                 "volumeMounts": [{"name": VOLUME_NAME, "mountPath": "/m"}]},
                {"name": "tool"}],
                "volumes": [{"name": VOLUME_NAME}]}
        }));
        assert_eq!(pod_identity(&injected, ARN, None).status, Status::Pass);
        assert_eq!(
            pod_identity(&injected, "arn:other", None).status,
            Status::Fail
        );
        let plain = pod(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "app"}]}
        }));
        let annotated: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let before = pod_identity(&plain, ARN, Some(annotated));
        assert!(before.fix.unwrap().starts_with("restart it"));
        let same_second = pod_identity(&plain, ARN, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(same_second.fix.unwrap().starts_with("restart it"));
        let earlier: Timestamp = "2025-12-31T00:00:00Z".parse().unwrap();
        let unmutated = pod_identity(&plain, ARN, Some(earlier));
        assert!(unmutated.fix.unwrap().contains("--webhook"));
    }

    #[test]
    fn annotation_time_from_managed_fields() {
        let entries: Vec<ManagedFieldsEntry> = serde_json::from_value(json!([
            {"manager": "kubectl", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}}},
            {"manager": "irsa-operator", "time": "2026-01-03T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}}},
            {"manager": "irsa-operator", "time": "2026-01-05T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {}}}}
        ]))
        .unwrap();
        assert_eq!(
            annotated_at(&entries, "irsa-operator"),
            Some("2026-01-03T00:00:00Z".parse().unwrap())
        );
        assert_eq!(annotated_at(&entries, "nobody"), None);
    }
}
