//! Pure: compare the desired role with what IAM holds and list the fewest IAM writes
//! that close the gap. An in-sync role yields an empty plan.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    desired::{DesiredRole, INLINE_POLICY_NAME},
    iam_role::ObservedRole,
    ownership::{Adoption, Owner},
    policy::semantically_equal,
};

/// One IAM write, applied to the role being reconciled.
#[derive(Debug, Clone, PartialEq)]
pub enum IamOp {
    CreateRole {
        path: String,
        trust_policy: Value,
        description: String,
        max_session_duration: i32,
        permissions_boundary: Option<String>,
        tags: BTreeMap<String, String>,
    },
    UpdateTrustPolicy(Value),
    UpdateRole {
        description: String,
        max_session_duration: i32,
    },
    PutPermissionsBoundary(String),
    DeletePermissionsBoundary,
    TagRole(BTreeMap<String, String>),
    UntagRole(Vec<String>),
    PutInlinePolicy {
        name: String,
        document: Value,
    },
    DeleteInlinePolicy(String),
    AttachPolicy(String),
    DetachPolicy(String),
    DeleteRole,
}

impl IamOp {
    /// The IAM API operation this write uses; a bounded metric label.
    pub fn operation(&self) -> &'static str {
        match self {
            IamOp::CreateRole { .. } => "CreateRole",
            IamOp::UpdateTrustPolicy(_) => "UpdateAssumeRolePolicy",
            IamOp::UpdateRole { .. } => "UpdateRole",
            IamOp::PutPermissionsBoundary(_) => "PutRolePermissionsBoundary",
            IamOp::DeletePermissionsBoundary => "DeleteRolePermissionsBoundary",
            IamOp::TagRole(_) => "TagRole",
            IamOp::UntagRole(_) => "UntagRole",
            IamOp::PutInlinePolicy { .. } => "PutRolePolicy",
            IamOp::DeleteInlinePolicy(_) => "DeleteRolePolicy",
            IamOp::AttachPolicy(_) => "AttachRolePolicy",
            IamOp::DetachPolicy(_) => "DetachRolePolicy",
            IamOp::DeleteRole => "DeleteRole",
        }
    }

    /// A short human description for events and logs.
    pub fn describe(&self) -> String {
        match self {
            IamOp::PutInlinePolicy { name, .. } => format!("PutRolePolicy {name}"),
            IamOp::DeleteInlinePolicy(name) => format!("DeleteRolePolicy {name}"),
            IamOp::AttachPolicy(arn) => format!("AttachRolePolicy {arn}"),
            IamOp::DetachPolicy(arn) => format!("DetachRolePolicy {arn}"),
            IamOp::PutPermissionsBoundary(arn) => format!("PutRolePermissionsBoundary {arn}"),
            other => other.operation().to_string(),
        }
    }
}

/// The role exists but belongs to someone else: it must not be touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConflict(pub String);

fn check_ownership(
    role_name: &str,
    owner: &Owner,
    adoption: Adoption,
    observed: &ObservedRole,
) -> Result<(), RoleConflict> {
    let tags = &observed.summary.tags;
    if owner.may_take(tags, adoption) {
        return Ok(());
    }
    let why = owner.mismatch(tags).unwrap_or_default();
    Err(RoleConflict(format!(
        "IAM role {role_name} already exists and is not owned by this PodIamRole ({why}); \
         it is left untouched. Delete or rename that role, or set spec.roleName"
    )))
}

/// The writes that make IAM match `desired`.
pub fn plan_apply(
    desired: &DesiredRole,
    observed: Option<&ObservedRole>,
) -> Result<Vec<IamOp>, RoleConflict> {
    let Some(observed) = observed else {
        return Ok(plan_create(desired));
    };
    check_ownership(&desired.name, &desired.owner, desired.adoption, observed)?;
    let current = &observed.summary;
    let mut ops = Vec::new();

    // Tags first: the operator's IAM policy lets it change only roles tagged for its
    // cluster, so an adopted or released role must carry the tag before anything else.
    let changed_tags: BTreeMap<String, String> = desired
        .tags
        .iter()
        .filter(|(key, value)| current.tags.get(*key) != Some(value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !changed_tags.is_empty() {
        ops.push(IamOp::TagRole(changed_tags));
    }

    if !semantically_equal(&desired.trust_policy, &current.trust_policy) {
        ops.push(IamOp::UpdateTrustPolicy(desired.trust_policy.clone()));
    }
    if desired.description != current.description
        || desired.max_session_duration != current.max_session_duration
    {
        ops.push(IamOp::UpdateRole {
            description: desired.description.clone(),
            max_session_duration: desired.max_session_duration,
        });
    }
    match (&desired.permissions_boundary, &current.permissions_boundary) {
        (Some(want), have) if Some(want) != have.as_ref() => {
            ops.push(IamOp::PutPermissionsBoundary(want.clone()))
        }
        (None, Some(_)) => ops.push(IamOp::DeletePermissionsBoundary),
        _ => {}
    }

    let stale_tags: Vec<String> = current
        .tags
        .keys()
        .filter(|key| !desired.tags.contains_key(*key))
        .cloned()
        .collect();
    if !stale_tags.is_empty() {
        ops.push(IamOp::UntagRole(stale_tags));
    }

    // Extra inline policies go first, so the size quota has room for ours.
    for name in observed.inline_policies.keys() {
        if name != INLINE_POLICY_NAME || desired.inline_policy.is_none() {
            ops.push(IamOp::DeleteInlinePolicy(name.clone()));
        }
    }
    if let Some(document) = &desired.inline_policy {
        let in_sync = observed
            .inline_policies
            .get(INLINE_POLICY_NAME)
            .is_some_and(|have| semantically_equal(document, have));
        if !in_sync {
            ops.push(put_inline(document));
        }
    }

    // Detach before attach, so the per-role attachment quota has room.
    ops.extend(
        observed
            .managed_policy_arns
            .difference(&desired.managed_policy_arns)
            .map(|arn| IamOp::DetachPolicy(arn.clone())),
    );
    ops.extend(attachments(
        desired
            .managed_policy_arns
            .difference(&observed.managed_policy_arns),
    ));
    Ok(ops)
}

fn plan_create(desired: &DesiredRole) -> Vec<IamOp> {
    let mut ops = vec![IamOp::CreateRole {
        path: desired.path.clone(),
        trust_policy: desired.trust_policy.clone(),
        description: desired.description.clone(),
        max_session_duration: desired.max_session_duration,
        permissions_boundary: desired.permissions_boundary.clone(),
        tags: desired.tags.clone(),
    }];
    ops.extend(desired.inline_policy.as_ref().map(put_inline));
    ops.extend(attachments(&desired.managed_policy_arns));
    ops
}

fn put_inline(document: &Value) -> IamOp {
    IamOp::PutInlinePolicy {
        name: INLINE_POLICY_NAME.to_string(),
        document: document.clone(),
    }
}

fn attachments<'a>(arns: impl IntoIterator<Item = &'a String>) -> impl Iterator<Item = IamOp> {
    arns.into_iter().map(|arn| IamOp::AttachPolicy(arn.clone()))
}

/// The writes that remove an owned role: IAM refuses to delete a role that still has
/// policies (`DeleteConflict`), so they go first.
pub fn plan_delete(
    role_name: &str,
    owner: &Owner,
    observed: Option<&ObservedRole>,
) -> Result<Vec<IamOp>, RoleConflict> {
    let Some(observed) = observed else {
        return Ok(Vec::new());
    };
    // Only a role fully tagged for this object is ever deleted.
    check_ownership(role_name, owner, Adoption::Never, observed)?;
    let mut ops: Vec<IamOp> = observed
        .inline_policies
        .keys()
        .map(|name| IamOp::DeleteInlinePolicy(name.clone()))
        .collect();
    ops.extend(
        observed
            .managed_policy_arns
            .iter()
            .map(|arn| IamOp::DetachPolicy(arn.clone())),
    );
    ops.push(IamOp::DeleteRole);
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{desired, in_sync, owner};
    use serde_json::json;
    use std::collections::BTreeSet;

    fn arn_set(arns: &[String]) -> BTreeSet<String> {
        arns.iter().cloned().collect()
    }

    #[test]
    fn missing_role_is_created_with_everything() {
        let mut want = desired();
        want.managed_policy_arns = arn_set(&["arn:aws:iam::aws:policy/A".into()]);
        let ops = plan_apply(&want, None).unwrap();
        let names: Vec<_> = ops.iter().map(IamOp::operation).collect();
        assert_eq!(names, ["CreateRole", "PutRolePolicy", "AttachRolePolicy"]);
        assert!(matches!(&ops[0], IamOp::CreateRole { tags, .. } if tags == &want.tags));
    }

    #[test]
    fn in_sync_role_needs_no_writes() {
        let want = desired();
        assert_eq!(plan_apply(&want, Some(&in_sync(&want))), Ok(vec![]));
    }

    #[test]
    fn changed_policy_is_exactly_one_write() {
        let want = desired();
        let mut have = in_sync(&want);
        have.inline_policies.insert(
            INLINE_POLICY_NAME.into(),
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
        );
        assert_eq!(
            plan_apply(&want, Some(&have)),
            Ok(vec![IamOp::PutInlinePolicy {
                name: INLINE_POLICY_NAME.into(),
                document: want.inline_policy.clone().unwrap()
            }])
        );
    }

    #[test]
    fn drift_in_every_field_is_repaired() {
        let want = desired();
        let mut have = in_sync(&want);
        have.summary.trust_policy = json!({"Version": "2012-10-17", "Statement": []});
        have.summary.description = "edited by hand".into();
        have.summary.permissions_boundary = Some("arn:aws:iam::aws:policy/B".into());
        have.summary.tags.insert("extra".into(), "x".into());
        have.inline_policies.insert("hand-made".into(), json!({}));
        have.managed_policy_arns
            .insert("arn:aws:iam::aws:policy/Admin".into());
        let ops = plan_apply(&want, Some(&have)).unwrap();
        assert_eq!(
            ops,
            vec![
                IamOp::UpdateTrustPolicy(want.trust_policy.clone()),
                IamOp::UpdateRole {
                    description: String::new(),
                    max_session_duration: 3600
                },
                IamOp::DeletePermissionsBoundary,
                IamOp::UntagRole(vec!["extra".into()]),
                IamOp::DeleteInlinePolicy("hand-made".into()),
                IamOp::DetachPolicy("arn:aws:iam::aws:policy/Admin".into()),
            ]
        );
    }

    #[test]
    fn managed_policies_are_a_set_difference() {
        let mut want = desired();
        want.managed_policy_arns = arn_set(&[
            "arn:aws:iam::aws:policy/A".into(),
            "arn:aws:iam::aws:policy/B".into(),
        ]);
        let mut have = in_sync(&want);
        have.managed_policy_arns = arn_set(&[
            "arn:aws:iam::aws:policy/B".into(),
            "arn:aws:iam::aws:policy/C".into(),
        ]);
        assert_eq!(
            plan_apply(&want, Some(&have)).unwrap(),
            vec![
                IamOp::DetachPolicy("arn:aws:iam::aws:policy/C".into()),
                IamOp::AttachPolicy("arn:aws:iam::aws:policy/A".into()),
            ]
        );
    }

    #[test]
    fn removing_the_inline_policy_deletes_it() {
        let mut want = desired();
        let have = in_sync(&want);
        want.inline_policy = None;
        assert_eq!(
            plan_apply(&want, Some(&have)).unwrap(),
            vec![IamOp::DeleteInlinePolicy(INLINE_POLICY_NAME.into())]
        );
    }

    #[test]
    fn a_released_role_is_tagged_before_any_other_write() {
        let mut want = desired();
        want.adoption = crate::ownership::Adoption::Retained;
        let mut have = in_sync(&want);
        have.summary
            .tags
            .insert("irsa.dev/cluster".into(), "released-from-prod".into());
        have.summary.description = "changed meanwhile".into();
        let ops = plan_apply(&want, Some(&have)).unwrap();
        assert!(matches!(ops[0], IamOp::TagRole(_)), "{ops:?}");
        assert!(ops.len() > 1, "{ops:?}");
    }

    #[test]
    fn boundary_and_changed_tag_values() {
        let mut want = desired();
        let have = in_sync(&want);
        want.permissions_boundary = Some("arn:aws:iam::aws:policy/Boundary".into());
        want.tags.insert("team".into(), "payments".into());
        assert_eq!(
            plan_apply(&want, Some(&have)).unwrap(),
            vec![
                IamOp::TagRole(BTreeMap::from([("team".into(), "payments".into())])),
                IamOp::PutPermissionsBoundary("arn:aws:iam::aws:policy/Boundary".into()),
            ]
        );
    }

    #[test]
    fn foreign_role_is_a_conflict() {
        let want = desired();
        let mut have = in_sync(&want);
        have.summary.tags.clear();
        let RoleConflict(message) = plan_apply(&want, Some(&have)).unwrap_err();
        assert!(
            message.contains("not owned by this PodIamRole"),
            "{message}"
        );
        assert!(plan_delete(&want.name, &owner(), Some(&have)).is_err());
    }

    #[test]
    fn deletion_removes_policies_before_the_role() {
        let mut want = desired();
        want.managed_policy_arns = arn_set(&["arn:aws:iam::aws:policy/A".into()]);
        let have = in_sync(&want);
        assert_eq!(
            plan_delete(&want.name, &owner(), Some(&have)).unwrap(),
            vec![
                IamOp::DeleteInlinePolicy(INLINE_POLICY_NAME.into()),
                IamOp::DetachPolicy("arn:aws:iam::aws:policy/A".into()),
                IamOp::DeleteRole,
            ]
        );
        assert_eq!(plan_delete(&want.name, &owner(), None), Ok(vec![]));
    }
}
