//! An in-memory IAM for unit tests: it applies writes like IAM does and counts every call.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use async_trait::async_trait;
use serde_json::Value;

use super::{IamApi, IamError, ListedRole, ObservedRole, RolePage, RoleSummary};
use irsa_core::{oidc::ObservedProvider, oidc::ProviderOp, plan::IamOp};

#[derive(Default)]
pub struct FakeIam {
    pub roles: Mutex<BTreeMap<String, ObservedRole>>,
    pub providers: Mutex<BTreeMap<String, ObservedProvider>>,
    /// Every call made, as `Operation role`.
    pub calls: Mutex<Vec<String>>,
    /// Roles per page of `list_roles_page`; all in one page when unset.
    pub page_size: Option<usize>,
}

impl FakeIam {
    pub fn writes(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.starts_with("Get") && !c.starts_with("List"))
            .cloned()
            .collect()
    }

    fn record(&self, operation: &str, role: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{operation} {role}"));
    }

    fn not_found(operation: &'static str, role: &str) -> IamError {
        IamError::new(
            operation,
            "NoSuchEntity",
            format!("The role with name {role} cannot be found."),
        )
    }
}

#[async_trait]
impl IamApi for FakeIam {
    async fn get_role(&self, role: &str) -> Result<Option<RoleSummary>, IamError> {
        self.record("GetRole", role);
        Ok(self
            .roles
            .lock()
            .unwrap()
            .get(role)
            .map(|r| r.summary.clone()))
    }

    async fn list_role_policy_names(&self, role: &str) -> Result<Vec<String>, IamError> {
        self.record("ListRolePolicies", role);
        let roles = self.roles.lock().unwrap();
        let found = roles
            .get(role)
            .ok_or_else(|| Self::not_found("ListRolePolicies", role))?;
        Ok(found.inline_policies.keys().cloned().collect())
    }

    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Value, IamError> {
        self.record("GetRolePolicy", role);
        let roles = self.roles.lock().unwrap();
        roles
            .get(role)
            .and_then(|r| r.inline_policies.get(policy).cloned())
            .ok_or_else(|| Self::not_found("GetRolePolicy", role))
    }

    async fn list_attached_policy_arns(&self, role: &str) -> Result<BTreeSet<String>, IamError> {
        self.record("ListAttachedRolePolicies", role);
        let roles = self.roles.lock().unwrap();
        let found = roles
            .get(role)
            .ok_or_else(|| Self::not_found("ListAttachedRolePolicies", role))?;
        Ok(found.managed_policy_arns.clone())
    }

    async fn execute(&self, role: &str, op: &IamOp) -> Result<(), IamError> {
        self.record(op.operation(), role);
        let mut roles = self.roles.lock().unwrap();
        if let IamOp::CreateRole {
            path,
            trust_policy,
            description,
            max_session_duration,
            permissions_boundary,
            tags,
        } = op
        {
            if roles.contains_key(role) {
                return Err(IamError::new(
                    "CreateRole",
                    "EntityAlreadyExists",
                    format!("Role with name {role} already exists."),
                ));
            }
            let summary = RoleSummary {
                arn: format!("arn:aws:iam::111122223333:role{path}{role}"),
                role_id: format!("AROA{}", role.to_uppercase()),
                path: path.clone(),
                trust_policy: trust_policy.clone(),
                description: description.clone(),
                max_session_duration: *max_session_duration,
                permissions_boundary: permissions_boundary.clone(),
                tags: tags.clone(),
            };
            let created = ObservedRole {
                summary,
                inline_policies: BTreeMap::new(),
                managed_policy_arns: BTreeSet::new(),
            };
            roles.insert(role.to_string(), created);
            return Ok(());
        }
        let found = roles
            .get_mut(role)
            .ok_or_else(|| Self::not_found(op.operation(), role))?;
        let summary = &mut found.summary;
        match op {
            IamOp::CreateRole { .. } => unreachable!("handled above"),
            IamOp::UpdateTrustPolicy(document) => summary.trust_policy = document.clone(),
            IamOp::UpdateRole {
                description,
                max_session_duration,
            } => {
                summary.description = description.clone();
                summary.max_session_duration = *max_session_duration;
            }
            IamOp::PutPermissionsBoundary(arn) => summary.permissions_boundary = Some(arn.clone()),
            IamOp::DeletePermissionsBoundary => summary.permissions_boundary = None,
            IamOp::TagRole(tags) => summary.tags.extend(tags.clone()),
            IamOp::UntagRole(keys) => summary.tags.retain(|k, _| !keys.contains(k)),
            IamOp::PutInlinePolicy { name, document } => {
                found.inline_policies.insert(name.clone(), document.clone());
            }
            IamOp::DeleteInlinePolicy(name) => {
                found
                    .inline_policies
                    .remove(name)
                    .ok_or_else(|| Self::not_found("DeleteRolePolicy", role))?;
            }
            IamOp::AttachPolicy(arn) => {
                found.managed_policy_arns.insert(arn.clone());
            }
            IamOp::DetachPolicy(arn) => {
                found.managed_policy_arns.remove(arn);
            }
            IamOp::DeleteRole => {
                if !found.inline_policies.is_empty() || !found.managed_policy_arns.is_empty() {
                    return Err(IamError::new(
                        "DeleteRole",
                        "DeleteConflict",
                        "Cannot delete entity, must remove policies first.",
                    ));
                }
                roles.remove(role);
            }
        }
        Ok(())
    }

    async fn get_oidc_provider(&self, arn: &str) -> Result<Option<ObservedProvider>, IamError> {
        self.record("GetOpenIDConnectProvider", arn);
        Ok(self.providers.lock().unwrap().get(arn).cloned())
    }

    async fn execute_provider(&self, arn: &str, op: &ProviderOp) -> Result<(), IamError> {
        self.record(op.operation(), arn);
        let mut providers = self.providers.lock().unwrap();
        if let ProviderOp::Create {
            url,
            client_ids,
            thumbprints,
            tags,
        } = op
        {
            let url = url.trim_start_matches("https://").to_string();
            let created = ObservedProvider {
                url,
                client_ids: client_ids.clone(),
                thumbprints: thumbprints.clone(),
                tags: tags.clone(),
            };
            providers.insert(arn.to_string(), created);
            return Ok(());
        }
        let found = providers
            .get_mut(arn)
            .ok_or_else(|| Self::not_found(op.operation(), arn))?;
        match op {
            ProviderOp::Create { .. } => unreachable!("handled above"),
            ProviderOp::UpdateThumbprints(thumbprints) => found.thumbprints = thumbprints.clone(),
            ProviderOp::AddClientId(id) => {
                found.client_ids.insert(id.clone());
            }
            ProviderOp::RemoveClientId(id) => {
                found.client_ids.remove(id);
            }
        }
        Ok(())
    }

    async fn list_roles_page(&self, marker: Option<&str>) -> Result<RolePage, IamError> {
        self.record("GetAccountAuthorizationDetails", marker.unwrap_or_default());
        let roles = self.roles.lock().unwrap();
        // The marker is the last role name of the previous page.
        let rest: Vec<ListedRole> = roles
            .iter()
            .filter(|(name, _)| marker.is_none_or(|m| name.as_str() > m))
            .map(|(name, role)| ListedRole {
                name: name.clone(),
                arn: role.summary.arn.clone(),
                role_id: role.summary.role_id.clone(),
                path: role.summary.path.clone(),
                tags: role.summary.tags.clone(),
                trust_policy: role.summary.trust_policy.clone(),
                permissions_boundary: role.summary.permissions_boundary.clone(),
                inline_policies: role.inline_policies.clone(),
                managed_policy_arns: role.managed_policy_arns.clone(),
            })
            .collect();
        let size = self.page_size.unwrap_or(usize::MAX);
        let next_marker = (rest.len() > size).then(|| rest[size - 1].name.clone());
        Ok(RolePage {
            roles: rest.into_iter().take(size).collect(),
            next_marker,
        })
    }
}
