//! One pod admission: from the AdmissionRequest and its ServiceAccount's annotations to
//! the AdmissionResponse. Pure; the server looks the ServiceAccount up in between.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};

use super::{InjectionDefaults, identity, inject, patch};

/// How an admission ended, as the `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The pod got an identity.
    Mutated,
    /// The ServiceAccount has a role and the pod already has everything (a re-admission).
    Unchanged,
    /// The ServiceAccount has no role annotation (or was not found): the pod passes as is.
    NoRole,
    /// The request carried no pod; it is allowed unchanged, never blocked.
    Invalid,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::NoRole => "no_role",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The namespace and ServiceAccount name whose annotations decide this admission.
pub fn service_account(request: &AdmissionRequest<Pod>) -> Option<(String, String)> {
    let pod = request.object.as_ref()?;
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())?;
    let name = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone())
        .filter(|name| !name.is_empty())
        // The API server's ServiceAccount admission fills this in, but may run after us.
        .unwrap_or_else(|| "default".into());
    Some((namespace, name))
}

/// Always allows: the webhook adds an identity, it never decides whether a pod may run.
pub fn respond(
    request: &AdmissionRequest<Pod>,
    annotations: Option<&BTreeMap<String, String>>,
    defaults: &InjectionDefaults,
) -> (AdmissionResponse, Outcome) {
    let allowed = AdmissionResponse::from(request);
    let Some(pod) = request.object.as_ref() else {
        return (allowed, Outcome::Invalid);
    };
    let Some(identity) = annotations.and_then(|a| identity(a, defaults)) else {
        return (allowed, Outcome::NoRole);
    };
    let patch = patch(pod, &inject(pod, &identity, defaults));
    if patch.0.is_empty() {
        return (allowed, Outcome::Unchanged);
    }
    match allowed.clone().with_patch(patch) {
        Ok(patched) => (patched, Outcome::Mutated),
        Err(_) => (allowed, Outcome::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::admission_request;
    use serde_json::{Value, json};

    fn request(pod: Value) -> AdmissionRequest<Pod> {
        admission_request("CREATE", pod, Value::Null)
    }

    fn role() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::1:role/r".to_string(),
        )])
    }

    fn response_json(response: AdmissionResponse) -> Value {
        serde_json::to_value(response.into_review()).unwrap()
    }

    #[test]
    fn names_the_service_account_or_default() {
        let named = request(json!({"spec": {"serviceAccountName": "app", "containers": []}}));
        assert_eq!(service_account(&named), Some(("team".into(), "app".into())));
        let unnamed = request(json!({"spec": {"containers": []}}));
        assert_eq!(
            service_account(&unnamed),
            Some(("team".into(), "default".into()))
        );
    }

    #[test]
    fn mutates_with_a_json_patch_and_the_request_uid() {
        let request = request(json!({"spec": {"containers": [{"name": "app"}]}}));
        let (response, outcome) = respond(&request, Some(&role()), &InjectionDefaults::default());
        assert_eq!(outcome, Outcome::Mutated);
        let review = response_json(response);
        assert_eq!(review["response"]["uid"], "u-1");
        assert_eq!(review["response"]["allowed"], true);
        assert_eq!(review["response"]["patchType"], "JSONPatch");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    }

    #[test]
    fn allows_unchanged_without_role_or_pod_or_work() {
        let defaults = InjectionDefaults::default();
        let plain = request(json!({"spec": {"containers": [{"name": "app"}]}}));
        let (response, outcome) = respond(&plain, None, &defaults);
        assert_eq!(outcome, Outcome::NoRole);
        assert_eq!(response_json(response)["response"].get("patch"), None);

        let (_, outcome) = respond(&plain, Some(&BTreeMap::new()), &defaults);
        assert_eq!(outcome, Outcome::NoRole);

        let mut empty = plain.clone();
        empty.object = None;
        let (response, outcome) = respond(&empty, Some(&role()), &defaults);
        assert_eq!(outcome, Outcome::Invalid);
        assert_eq!(response_json(response)["response"]["allowed"], true);
    }

    #[test]
    fn an_injected_pod_is_unchanged() {
        let defaults = InjectionDefaults::default();
        let identity = identity(&role(), &defaults).unwrap();
        let pod: Pod =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        let injected = inject(&pod, &identity, &defaults);
        let again = request(serde_json::to_value(injected).unwrap());
        let (_, outcome) = respond(&again, Some(&role()), &defaults);
        assert_eq!(outcome, Outcome::Unchanged);
    }
}
