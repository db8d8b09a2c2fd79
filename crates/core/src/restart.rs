//! Restart on role change: which pods of a ServiceAccount run without its current role,
//! and which workloads to restart for them, as `kubectl rollout restart` does (a pod
//! template annotation). Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::pod_identity::lacking_identity;

/// `kubectl rollout restart` sets this; the rollout replaces every pod.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The role ARN a workload was last restarted for: it is restarted once per role change,
/// even while its old pods are still being replaced, or when no webhook injects anything.
pub const RESTARTED_FOR_ANNOTATION: &str = "irsa.dev/restarted-for";

/// A Deployment, StatefulSet or DaemonSet, as far as restarts care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: &'static str,
    pub name: String,
    pub service_account: String,
    /// `spec.selector.matchLabels`; workloads selecting by expressions are not restarted.
    pub match_labels: BTreeMap<String, String>,
    pub template_annotations: BTreeMap<String, String>,
}

/// Running pods that lack `role_arn` (admitted before the annotation, or with an older role).
pub fn stale_pods<'a>(pods: &'a [Pod], role_arn: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !lacking_identity(pod, role_arn).is_empty())
        .collect()
}

/// The workloads of `service_account` that own a stale pod and were not yet restarted for
/// `role_arn`.
pub fn to_restart<'a>(
    workloads: &'a [Workload],
    stale: &[&Pod],
    service_account: &str,
    role_arn: &str,
) -> Vec<&'a Workload> {
    workloads
        .iter()
        .filter(|w| w.service_account == service_account && !w.match_labels.is_empty())
        .filter(|w| {
            w.template_annotations
                .get(RESTARTED_FOR_ANNOTATION)
                .map(String::as_str)
                != Some(role_arn)
        })
        .filter(|w| {
            stale.iter().any(|pod| {
                let labels = pod.metadata.labels.as_ref();
                w.match_labels
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
        })
        .collect()
}

/// The merge patch that restarts a workload for `role_arn`.
pub fn restart_patch(role_arn: &str, now: jiff::Timestamp) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: now.to_string(),
        RESTARTED_FOR_ANNOTATION: role_arn,
    }}}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::1:role/app";

    fn pod(labels: Value, env: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "app", "env": env,
                "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/t"}]}],
            "volumes": [{"name": "aws-iam-token"}]}}))
        .unwrap()
    }

    fn identity(arn: &str) -> Value {
        json!([{"name": "AWS_ROLE_ARN", "value": arn},
               {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t/token"}])
    }

    fn workload(name: &str, app: &str, restarted_for: Option<&str>) -> Workload {
        Workload {
            kind: "Deployment",
            name: name.into(),
            service_account: "app".into(),
            match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            template_annotations: restarted_for
                .map(|arn| {
                    BTreeMap::from([(RESTARTED_FOR_ANNOTATION.to_string(), arn.to_string())])
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn stale_means_missing_or_older_role() {
        let pods = vec![
            pod(json!({"app": "a"}), json!([])),
            pod(json!({"app": "b"}), identity("arn:old")),
            pod(json!({"app": "c"}), identity(ARN)),
        ];
        let stale = stale_pods(&pods, ARN);
        assert_eq!(stale.len(), 2);
    }

    #[test]
    fn restarts_owners_of_stale_pods_once_per_role() {
        let pods = vec![
            pod(json!({"app": "a", "pod-template-hash": "1"}), json!([])),
            pod(json!({"app": "c"}), identity(ARN)),
        ];
        let stale = stale_pods(&pods, ARN);
        let workloads = vec![
            workload("a", "a", None),
            workload("again", "a", Some(ARN)),
            workload("earlier", "a", Some("arn:old")),
            workload("c", "c", None),
            Workload {
                service_account: "other".into(),
                ..workload("other-sa", "a", None)
            },
        ];
        let names: Vec<&str> = to_restart(&workloads, &stale, "app", ARN)
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(names, ["a", "earlier"]);
    }

    #[test]
    fn the_patch_is_a_rollout_restart() {
        let now: jiff::Timestamp = "2026-11-24T20:00:00Z".parse().unwrap();
        assert_eq!(
            restart_patch(ARN, now)["spec"]["template"]["metadata"]["annotations"],
            json!({RESTARTED_AT_ANNOTATION: "2026-11-24T20:00:00Z", RESTARTED_FOR_ANNOTATION: ARN})
        );
    }
}
