//! Pure: the validating webhook's side of one PodIamRole admission. Which requests need
//! the operator's checks at all, and how a refusal reads at `kubectl apply`. The checks
//! themselves are `admission::review`, the reconciler's own.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use irsa_api::PodIamRole;
use irsa_core::status::Outcome;

/// The characters the API server appends to a `generateName`.
const GENERATED_SUFFIX: &str = "xxxxx";

/// The PodIamRole to check, as it will be stored; `None` when the request cannot make
/// the operator refuse anything it does not already refuse.
///
/// An update that leaves the spec as it is (status, finalizers, labels) is never checked:
/// a guardrail tightened since must not stop the operator from removing its finalizer,
/// nor a user from labelling an object the status already reports.
pub fn to_check(request: &AdmissionRequest<PodIamRole>, now: Time) -> Option<PodIamRole> {
    let object = request.object.as_ref()?;
    match request.operation {
        Operation::Create => {}
        Operation::Update => {
            if object.metadata.deletion_timestamp.is_some()
                || request.old_object.as_ref().map(|old| &old.spec) == Some(&object.spec)
            {
                return None;
            }
        }
        Operation::Delete | Operation::Connect => return None,
    }
    let mut object = object.clone();
    object.metadata.namespace = request.namespace.clone().or(object.metadata.namespace);
    // Not stored yet: the newest of its namespace for the quota, and a name of the length
    // the API server will give it for the role name.
    object.metadata.creation_timestamp.get_or_insert(now);
    if object
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        let base = object.metadata.generate_name.clone().unwrap_or_default();
        object.metadata.name = Some(format!("{base}{GENERATED_SUFFIX}"));
    }
    Some(object)
}

/// Allows, or refuses with the reason and message the status would show.
pub fn respond(
    request: &AdmissionRequest<PodIamRole>,
    verdict: Result<(), Outcome>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    match verdict {
        Ok(()) => response,
        Err(outcome) => {
            let mut denied = response.deny(format!(
                "PodIamRole {}: {}: {}",
                request.name,
                outcome.reason(),
                outcome.message()
            ));
            denied.result.reason = outcome.reason().into();
            // 403, as for a ValidatingAdmissionPolicy's denial.
            denied.result.code = 403;
            denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::testing::{admission_request, pod_iam_role};
    use jiff::Timestamp;
    use serde_json::{Value, json};

    fn request(
        operation: &str,
        object: Option<Value>,
        old: Option<Value>,
    ) -> AdmissionRequest<PodIamRole> {
        let json = |value: Option<Value>| value.unwrap_or(Value::Null);
        admission_request(operation, json(object), json(old))
    }

    fn role_json() -> Value {
        serde_json::to_value(pod_iam_role("team", "app")).unwrap()
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn creates_are_checked_as_the_newest_object() {
        let checked = to_check(&request("CREATE", Some(role_json()), None), now()).unwrap();
        assert_eq!(checked.metadata.creation_timestamp, Some(now()));
        assert_eq!(checked.metadata.namespace.as_deref(), Some("team"));
    }

    #[test]
    fn a_generated_name_is_checked_at_its_final_length() {
        let mut object = role_json();
        object["metadata"]["name"] = Value::Null;
        object["metadata"]["generateName"] = json!("app-");
        let checked = to_check(&request("CREATE", Some(object), None), now()).unwrap();
        assert_eq!(checked.metadata.name.as_deref(), Some("app-xxxxx"));
    }

    #[test]
    fn updates_are_checked_only_when_the_spec_changes() {
        let old = role_json();
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"] = json!({"team": "a"});
        relabelled["metadata"]["finalizers"] = json!(["irsa.dev/cleanup"]);
        assert!(
            to_check(
                &request("UPDATE", Some(relabelled), Some(old.clone())),
                now()
            )
            .is_none()
        );

        let mut changed = old.clone();
        changed["spec"]["audience"] = json!("other");
        assert!(
            to_check(
                &request("UPDATE", Some(changed.clone()), Some(old.clone())),
                now()
            )
            .is_some()
        );

        changed["metadata"]["deletionTimestamp"] = json!("2027-01-01T00:00:00Z");
        assert!(to_check(&request("UPDATE", Some(changed), Some(old.clone())), now()).is_none());
        assert!(to_check(&request("DELETE", None, Some(old)), now()).is_none());
    }

    #[test]
    fn a_refusal_carries_the_status_reason_and_message() {
        let request = request("CREATE", Some(role_json()), None);
        assert_eq!(request.name, "app");
        let allowed = serde_json::to_value(respond(&request, Ok(())).into_review()).unwrap();
        assert_eq!(allowed["response"]["allowed"], true);

        let refused = respond(
            &request,
            Err(Outcome::PolicyNotAllowed("statement 0 grants `*`".into())),
        );
        let review = serde_json::to_value(refused.into_review()).unwrap();
        assert_eq!(review["response"]["allowed"], false);
        assert_eq!(review["response"]["uid"], "u-1");
        assert_eq!(review["response"]["status"]["code"], 403);
        assert_eq!(review["response"]["status"]["reason"], "PolicyNotAllowed");
        assert_eq!(
            review["response"]["status"]["message"],
            "PodIamRole app: PolicyNotAllowed: not allowed by the guardrails, nothing was \
             written to IAM: statement 0 grants `*`"
        );
    }
}
