//! `IamApi` over aws-sdk-iam. SDK errors are classified here and nowhere else.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
};

use async_trait::async_trait;
use aws_sdk_iam::{
    error::{ProvideErrorMetadata, SdkError},
    types::{EntityType, Tag},
};
use serde_json::Value;

use super::{
    IamApi, IamError, IamErrorKind, ListedRole, RolePage, RoleSummary, aws_error::classify,
};
use crate::metrics::Metrics;
use irsa_core::{
    account::AccountName, oidc::ObservedProvider, oidc::ProviderOp, plan::IamOp, policy,
};

pub struct AwsIam {
    client: aws_sdk_iam::Client,
    metrics: Arc<Metrics>,
    /// The account its calls are counted for.
    account: AccountName,
}

impl AwsIam {
    pub fn new(client: aws_sdk_iam::Client, metrics: Arc<Metrics>, account: AccountName) -> Self {
        Self {
            client,
            metrics,
            account,
        }
    }

    /// Runs one SDK call, counts it, and maps its error.
    async fn call<T, E, R>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, IamError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let result = request.await.map_err(|error| classify(operation, &error));
        let outcome = match &result {
            Ok(_) => "success",
            Err(error) => error.kind().label(),
        };
        self.metrics
            .record_iam_call(&self.account, operation, outcome);
        result
    }
}

fn build_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect::<Result<_, _>>()
        // Key and value are always set above.
        .expect("tag builder has key and value")
}

#[async_trait]
impl IamApi for AwsIam {
    async fn get_role(&self, role: &str) -> Result<Option<RoleSummary>, IamError> {
        let request = self.client.get_role().role_name(role).send();
        let output = match self.call("GetRole", request).await {
            Ok(output) => output,
            Err(error) if error.kind() == IamErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(found) = output.role() else {
            return Ok(None);
        };
        let trust_policy =
            policy::decode_iam_document(found.assume_role_policy_document().unwrap_or("{}"))
                .map_err(|message| IamError::new("GetRole", "UnreadableDocument", message))?;
        Ok(Some(RoleSummary {
            arn: found.arn().to_string(),
            role_id: found.role_id().to_string(),
            path: found.path().to_string(),
            trust_policy,
            description: found.description().unwrap_or_default().to_string(),
            max_session_duration: found.max_session_duration().unwrap_or(3600),
            permissions_boundary: found
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
            tags: found
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        }))
    }

    async fn list_role_policy_names(&self, role: &str) -> Result<Vec<String>, IamError> {
        let pages = self
            .client
            .list_role_policies()
            .role_name(role)
            .into_paginator()
            .items()
            .send()
            .try_collect();
        self.call("ListRolePolicies", pages).await
    }

    async fn get_role_policy(&self, role: &str, policy_name: &str) -> Result<Value, IamError> {
        let request = self
            .client
            .get_role_policy()
            .role_name(role)
            .policy_name(policy_name)
            .send();
        let output = self.call("GetRolePolicy", request).await?;
        policy::decode_iam_document(output.policy_document())
            .map_err(|message| IamError::new("GetRolePolicy", "UnreadableDocument", message))
    }

    async fn list_attached_policy_arns(&self, role: &str) -> Result<BTreeSet<String>, IamError> {
        let pages = self
            .client
            .list_attached_role_policies()
            .role_name(role)
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let attached = self.call("ListAttachedRolePolicies", pages).await?;
        Ok(attached
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect())
    }

    async fn execute(&self, role: &str, op: &IamOp) -> Result<(), IamError> {
        let c = &self.client;
        let operation = op.operation();
        match op {
            IamOp::CreateRole {
                path,
                trust_policy,
                description,
                max_session_duration,
                permissions_boundary,
                tags,
            } => {
                let request = c
                    .create_role()
                    .role_name(role)
                    .path(path)
                    .assume_role_policy_document(trust_policy.to_string())
                    .description(description)
                    .max_session_duration(*max_session_duration)
                    .set_permissions_boundary(permissions_boundary.clone())
                    .set_tags(Some(build_tags(tags)))
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::UpdateTrustPolicy(document) => {
                let request = c
                    .update_assume_role_policy()
                    .role_name(role)
                    .policy_document(document.to_string())
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::UpdateRole {
                description,
                max_session_duration,
            } => {
                let request = c
                    .update_role()
                    .role_name(role)
                    .description(description)
                    .max_session_duration(*max_session_duration)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::PutPermissionsBoundary(arn) => {
                let request = c
                    .put_role_permissions_boundary()
                    .role_name(role)
                    .permissions_boundary(arn)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::DeletePermissionsBoundary => {
                let request = c.delete_role_permissions_boundary().role_name(role).send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::TagRole(tags) => {
                let request = c
                    .tag_role()
                    .role_name(role)
                    .set_tags(Some(build_tags(tags)))
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::UntagRole(keys) => {
                let request = c
                    .untag_role()
                    .role_name(role)
                    .set_tag_keys(Some(keys.clone()))
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::PutInlinePolicy { name, document } => {
                let request = c
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(document.to_string())
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::DeleteInlinePolicy(name) => {
                let request = c
                    .delete_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::AttachPolicy(arn) => {
                let request = c
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::DetachPolicy(arn) => {
                let request = c
                    .detach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            IamOp::DeleteRole => {
                let request = c.delete_role().role_name(role).send();
                self.call(operation, request).await.map(drop)
            }
        }
    }

    async fn get_oidc_provider(&self, arn: &str) -> Result<Option<ObservedProvider>, IamError> {
        let request = self
            .client
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send();
        let output = match self.call("GetOpenIDConnectProvider", request).await {
            Ok(output) => output,
            Err(error) if error.kind() == IamErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(Some(ObservedProvider {
            url: output.url().unwrap_or_default().to_string(),
            client_ids: output.client_id_list().iter().cloned().collect(),
            thumbprints: output.thumbprint_list().to_vec(),
            tags: output
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        }))
    }

    async fn execute_provider(&self, arn: &str, op: &ProviderOp) -> Result<(), IamError> {
        let c = &self.client;
        let operation = op.operation();
        match op {
            ProviderOp::Create {
                url,
                client_ids,
                thumbprints,
                tags,
            } => {
                let request = c
                    .create_open_id_connect_provider()
                    .url(url)
                    .set_client_id_list(Some(client_ids.iter().cloned().collect()))
                    .set_thumbprint_list(Some(thumbprints.clone()))
                    .set_tags(Some(build_tags(tags)))
                    .send();
                self.call(operation, request).await.map(drop)
            }
            ProviderOp::UpdateThumbprints(thumbprints) => {
                let request = c
                    .update_open_id_connect_provider_thumbprint()
                    .open_id_connect_provider_arn(arn)
                    .set_thumbprint_list(Some(thumbprints.clone()))
                    .send();
                self.call(operation, request).await.map(drop)
            }
            ProviderOp::AddClientId(id) => {
                let request = c
                    .add_client_id_to_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .client_id(id)
                    .send();
                self.call(operation, request).await.map(drop)
            }
            ProviderOp::RemoveClientId(id) => {
                let request = c
                    .remove_client_id_from_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .client_id(id)
                    .send();
                self.call(operation, request).await.map(drop)
            }
        }
    }

    async fn list_roles_page(&self, marker: Option<&str>) -> Result<RolePage, IamError> {
        let request = self
            .client
            .get_account_authorization_details()
            .filter(EntityType::Role)
            // IAM's largest page; without it, pages hold 100 roles.
            .max_items(1000)
            .set_marker(marker.map(str::to_string))
            .send();
        let output = self.call("GetAccountAuthorizationDetails", request).await?;
        let roles = output
            .role_detail_list()
            .iter()
            .map(|role| ListedRole {
                name: role.role_name().unwrap_or_default().to_string(),
                arn: role.arn().unwrap_or_default().to_string(),
                role_id: role.role_id().unwrap_or_default().to_string(),
                path: role.path().unwrap_or_default().to_string(),
                tags: role
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
                trust_policy: listed_document(role.assume_role_policy_document()),
                permissions_boundary: role
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string),
                inline_policies: role
                    .role_policy_list()
                    .iter()
                    .map(|p| {
                        let name = p.policy_name().unwrap_or_default().to_string();
                        (name, listed_document(p.policy_document()))
                    })
                    .collect(),
                managed_policy_arns: role
                    .attached_managed_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string))
                    .collect(),
            })
            .collect();
        let next_marker = output
            .is_truncated()
            .then(|| output.marker().map(str::to_string))
            .flatten();
        Ok(RolePage { roles, next_marker })
    }
}

/// A policy document of a listing, or `Null` when it cannot be read: a listing only
/// tells whether a role may be in sync, and `Null` sends it to a fresh read.
fn listed_document(encoded: Option<&str>) -> Value {
    encoded
        .and_then(|text| policy::decode_iam_document(text).ok())
        .unwrap_or(Value::Null)
}
