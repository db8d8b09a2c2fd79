//! The `eks.amazonaws.com/role-arn` annotation: applied under the operator's own field
//! manager, and removed only while it still names the operator's role.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::FIELD_MANAGER;

pub use crate::webhook::mutate::ROLE_ARN_ANNOTATION;

/// Whether the ServiceAccount exists; the operator never creates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotation {
    Applied,
    ServiceAccountMissing,
}

/// True when `sa` carries the annotation with this value under our field manager, so
/// applying it again would be a no-op write.
fn already_applied(sa: &ServiceAccount, role_arn: &str) -> bool {
    let meta = sa.meta();
    let value_matches = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLE_ARN_ANNOTATION))
        .is_some_and(|v| v == role_arn);
    let owned = meta.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.fields_v1.as_ref().is_some_and(|f| {
                f.0.to_string()
                    .contains(&format!("f:{ROLE_ARN_ANNOTATION}"))
            })
    });
    value_matches && owned
}

/// Server-side applies the role ARN annotation and nothing else.
pub async fn annotate(
    api: &Api<ServiceAccount>,
    name: &str,
    role_arn: &str,
) -> Result<Annotation, kube::Error> {
    let Some(sa) = api.get_opt(name).await? else {
        return Ok(Annotation::ServiceAccountMissing);
    };
    if already_applied(&sa, role_arn) {
        return Ok(Annotation::Applied);
    }
    // The uid pins the patch to the object just read, so a ServiceAccount deleted in
    // between is never re-created by the apply.
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "uid": sa.meta().uid,
            "annotations": {ROLE_ARN_ANNOTATION: role_arn},
        },
    });
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(Annotation::Applied),
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
    let pointer = format!(
        "/metadata/annotations/{}",
        ROLE_ARN_ANNOTATION.replace('~', "~0").replace('/', "~1")
    );
    // `test` makes the removal atomic: if someone re-pointed the annotation, nothing happens.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": pointer, "value": role_arn},
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

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
