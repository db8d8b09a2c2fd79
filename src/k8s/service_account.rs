//! The `eks.amazonaws.com/role-arn` annotation (and `irsa.dev/aws-config`, the same
//! way): applied under the operator's own field manager, and removed only while it still
//! names the operator's value.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::FIELD_MANAGER;

pub use irsa_api::ROLE_ARN_ANNOTATION;

/// What became of the annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    Applied,
    /// The operator never creates a ServiceAccount.
    ServiceAccountMissing,
    /// Another field manager owns the annotation (or the whole annotations map) with
    /// another value or none; nothing was written, so the two never take turns
    /// overwriting it.
    Conflict {
        manager: String,
        value: Option<String>,
    },
}

/// The annotation's value on `sa`, if any.
fn current_value<'a>(sa: &'a ServiceAccount, key: &str) -> Option<&'a String> {
    sa.meta().annotations.as_ref().and_then(|a| a.get(key))
}

/// Decides without writing: `Some` when `sa` already says `wanted` (whoever set it) or
/// when a field manager other than `manager` owns a different value, which the operator
/// leaves alone.
fn settled(sa: &ServiceAccount, key: &str, wanted: &str, manager: &str) -> Option<Annotation> {
    let value = current_value(sa, key)?;
    if value == wanted {
        return Some(Annotation::Applied);
    }
    let field = format!("\"f:{key}\"");
    let owner = sa
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .find_map(|entry| {
            let entry_manager = entry.manager.as_deref()?;
            let owns = entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains(&field));
            (owns && entry_manager != manager).then(|| entry_manager.to_string())
        })?;
    Some(Annotation::Conflict {
        manager: owner,
        value: Some(value.clone()),
    })
}

/// Server-side applies the role ARN annotation and nothing else.
pub async fn annotate(
    api: &Api<ServiceAccount>,
    name: &str,
    role_arn: &str,
) -> Result<Annotation, kube::Error> {
    apply_annotation(api, name, ROLE_ARN_ANNOTATION, role_arn, FIELD_MANAGER).await
}

/// Server-side applies the annotation `key: value` and nothing else, as `manager`. Each
/// annotation the operator sets has its own manager: an apply drops the fields its
/// manager owned before and does not list again.
pub async fn apply_annotation(
    api: &Api<ServiceAccount>,
    name: &str,
    key: &str,
    value: &str,
    manager: &str,
) -> Result<Annotation, kube::Error> {
    let Some(sa) = api.get_opt(name).await? else {
        return Ok(Annotation::ServiceAccountMissing);
    };
    if let Some(settled) = settled(&sa, key, value, manager) {
        return Ok(settled);
    }
    // The uid pins the patch to the object just read, so a ServiceAccount deleted in
    // between is never re-created by the apply.
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "uid": sa.meta().uid,
            "annotations": {key: value},
        },
    });
    // Without force: another field manager's ownership is reported, never overridden.
    match api
        .patch(name, &PatchParams::apply(manager), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(Annotation::Applied),
        Err(kube::Error::Api(status)) if conflicting_manager(&status).is_some() => {
            Ok(Annotation::Conflict {
                manager: conflicting_manager(&status).unwrap_or_default(),
                value: current_value(&sa, key).cloned(),
            })
        }
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Annotation::ServiceAccountMissing),
        Err(e) => Err(e),
    }
}

/// Removes the annotation if, and only if, it still names `role_arn`.
pub async fn remove_annotation(
    api: &Api<ServiceAccount>,
    name: &str,
    role_arn: &str,
) -> Result<(), kube::Error> {
    remove_annotation_value(api, name, ROLE_ARN_ANNOTATION, role_arn).await
}

/// Removes the annotation `key` if, and only if, it still says `value`.
pub async fn remove_annotation_value(
    api: &Api<ServiceAccount>,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let pointer = format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    );
    // `test` makes the removal atomic: if someone re-pointed the annotation, nothing happens.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": pointer, "value": value},
        {"op": "remove", "path": pointer},
    ]))
    .expect("a well-formed JSON patch");
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or the test failed because the annotation changed or was removed.
        Err(e) if is_status(&e, 404) || is_status(&e, 422) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The field manager a server-side apply conflicted with (its causes read
/// `conflict with "manager"`), as opposed to the uid precondition failing (also 409).
fn conflicting_manager(status: &kube::core::Status) -> Option<String> {
    if status.code != 409 {
        return None;
    }
    let causes = status.details.as_ref()?.causes.iter();
    causes
        .filter(|cause| cause.reason == "FieldManagerConflict")
        .find_map(|cause| {
            let quoted = cause.message.strip_prefix("conflict with \"")?;
            Some(quoted.split('"').next()?.to_string())
        })
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sa(value: Option<&str>, managers: &[&str]) -> ServiceAccount {
        let fields =
            json!({"f:metadata": {"f:annotations": {format!("f:{ROLE_ARN_ANNOTATION}"): {}}}});
        let managed: Vec<_> = managers
            .iter()
            .map(|m| json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "app",
            "annotations": value.map(|v| json!({ROLE_ARN_ANNOTATION: v})).unwrap_or(json!({})),
            "managedFields": managed}}))
        .unwrap()
    }

    #[test]
    fn a_foreign_value_is_left_alone_and_named() {
        assert_eq!(
            settled(
                &sa(Some("arn:theirs"), &["argocd-controller"]),
                ROLE_ARN_ANNOTATION,
                "arn:ours",
                FIELD_MANAGER
            ),
            Some(Annotation::Conflict {
                manager: "argocd-controller".into(),
                value: Some("arn:theirs".into())
            })
        );
    }

    #[test]
    fn the_same_value_needs_no_write_whoever_set_it() {
        assert_eq!(
            settled(
                &sa(Some("arn:ours"), &["helm"]),
                ROLE_ARN_ANNOTATION,
                "arn:ours",
                FIELD_MANAGER
            ),
            Some(Annotation::Applied)
        );
        assert_eq!(
            settled(
                &sa(Some("arn:ours"), &[FIELD_MANAGER]),
                ROLE_ARN_ANNOTATION,
                "arn:ours",
                FIELD_MANAGER
            ),
            Some(Annotation::Applied)
        );
    }

    #[test]
    fn apply_conflicts_name_the_manager() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "code": 409, "reason": "Conflict", "status": "Failure",
            "message": "Apply failed with 1 conflict: conflict with \"argocd-controller\": .metadata.annotations",
            "details": {"causes": [{"reason": "FieldManagerConflict",
                "message": "conflict with \"argocd-controller\"", "field": ".metadata.annotations"}]}
        }))
        .unwrap();
        assert_eq!(
            conflicting_manager(&status).as_deref(),
            Some("argocd-controller")
        );
        let precondition: kube::core::Status = serde_json::from_value(json!({
            "code": 409, "reason": "Conflict", "status": "Failure",
            "message": "Precondition failed: UID in precondition: a, UID in object meta: b"
        }))
        .unwrap();
        assert_eq!(conflicting_manager(&precondition), None);
    }

    #[test]
    fn our_own_old_value_or_none_is_applied() {
        assert_eq!(
            settled(
                &sa(Some("arn:old"), &[FIELD_MANAGER]),
                ROLE_ARN_ANNOTATION,
                "arn:ours",
                FIELD_MANAGER
            ),
            None
        );
        assert_eq!(
            settled(
                &sa(None, &[]),
                ROLE_ARN_ANNOTATION,
                "arn:ours",
                FIELD_MANAGER
            ),
            None
        );
    }
}
