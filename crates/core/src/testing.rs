//! Test fixtures, built in one place: specs, configs, owners, desired roles and objects.

use kube::{
    Resource,
    core::{
        ObjectMeta,
        admission::{AdmissionRequest, AdmissionReview},
    },
};
use serde_json::{Value, json};

use crate::{
    config::OperatorConfig,
    desired::{DesiredRole, INLINE_POLICY_NAME, desired_role},
    guardrail::Baseline,
    guardrail::Context,
    iam_role::{ObservedRole, RoleSummary},
    ownership::Owner,
    policy,
};
use irsa_api::{ChainLink, PodIamRole, PodIamRoleAccount, PodIamRoleAccountSpec, PodIamRoleSpec};

pub fn test_config() -> OperatorConfig {
    OperatorConfig {
        cluster_name: "prod".into(),
        partition: "aws".into(),
        account_id: "111122223333".into(),
        issuer_host_path: "oidc.eks.us-east-1.amazonaws.com/id/ABC".into(),
        role_path: "/irsa/prod/".into(),
        role_name_prefix: String::new(),
        baseline: Default::default(),
    }
}

/// Where the guardrail tests decide a spec: namespace `shop` of cluster `prod`, no older roles.
pub fn guardrail_context(baseline: &Baseline) -> Context<'_> {
    Context {
        namespace: "shop",
        own_prefix: "prod.shop.",
        rank: 0,
        baseline,
    }
}

pub fn owner() -> Owner {
    Owner {
        cluster: "prod".into(),
        namespace: "shop".into(),
        name: "payments".into(),
        uid: "uid-1".into(),
    }
}

pub fn spec() -> PodIamRoleSpec {
    PodIamRoleSpec {
        service_account_name: "payments".into(),
        policy: Some(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem"],
            "Resource": "arn:aws:dynamodb:us-east-1:111122223333:table/payments"}]}),
        ),
        ..Default::default()
    }
}

pub fn desired() -> DesiredRole {
    desired_role(&spec(), owner(), &test_config()).unwrap()
}

/// A document as IAM gives it back: URL-encoded, its lists reordered.
pub fn respelled_by_iam(document: &Value) -> Value {
    let mut reordered = policy::normalize(document);
    if let Some(statements) = reordered["Statement"].as_array_mut() {
        statements.reverse();
    }
    let encoded: String = percent_encoding::utf8_percent_encode(
        &reordered.to_string(),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .collect();
    policy::decode_iam_document(&encoded).unwrap()
}

/// The RoleId IAM gave the role of `in_sync`.
pub const ROLE_ID: &str = "AROAEXAMPLEPAYMENTS";

/// What IAM holds after the desired role was applied, with IAM's own spelling.
pub fn in_sync(desired: &DesiredRole) -> ObservedRole {
    ObservedRole {
        summary: RoleSummary {
            arn: desired.arn.clone(),
            role_id: ROLE_ID.into(),
            path: desired.path.clone(),
            trust_policy: respelled_by_iam(&desired.trust_policy),
            description: desired.description.clone(),
            max_session_duration: desired.max_session_duration,
            permissions_boundary: desired.permissions_boundary.clone(),
            tags: desired.tags.clone(),
        },
        inline_policies: desired
            .inline_policy
            .iter()
            .map(|doc| (INLINE_POLICY_NAME.to_string(), respelled_by_iam(doc)))
            .collect(),
        managed_policy_arns: desired.managed_policy_arns.clone(),
    }
}

/// A PodIamRole with the payments spec, in `namespace`, with a UID derived from its name.
pub fn pod_iam_role(namespace: &str, name: &str) -> PodIamRole {
    PodIamRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(format!("uid-{namespace}-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec: spec(),
        status: None,
    }
}

/// An admission request, as the API server sends it, for an object of kind `K` in
/// namespace `team`; `object` and `old` as JSON (or null).
pub fn admission_request<K>(operation: &str, object: Value, old: Value) -> AdmissionRequest<K>
where
    K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let kind = json!({"group": K::group(&()), "version": K::version(&()), "kind": K::kind(&())});
    let resource =
        json!({"group": K::group(&()), "version": K::version(&()), "resource": K::plural(&())});
    let review: AdmissionReview<K> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": object["metadata"]["name"].as_str().unwrap_or_default(),
            "namespace": "team",
            "operation": operation,
            "userInfo": {},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .unwrap();
    review.try_into().unwrap()
}

/// A chain link with only a profile and a target.
pub fn chain_link(profile: &str, role_arn: &str) -> ChainLink {
    ChainLink {
        profile: profile.into(),
        role_arn: role_arn.into(),
        ..Default::default()
    }
}

/// A target account `name` with ID `account_id`, open to every namespace.
pub fn account(name: &str, account_id: &str) -> PodIamRoleAccount {
    let mut account = PodIamRoleAccount::new(
        name,
        PodIamRoleAccountSpec {
            account_id: account_id.into(),
            management_role_arn: format!("arn:aws:iam::{account_id}:role/irsa-management"),
            external_id: Some("external-id".into()),
            ..Default::default()
        },
    );
    account.metadata.generation = Some(1);
    account
}
