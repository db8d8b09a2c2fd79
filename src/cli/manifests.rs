//! Pure: PodIamRoles, guardrails and namespaces read from manifests, and the checks the
//! reconciler makes before it writes anything, run on them offline.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::Value;

/// The label the API server puts on every namespace: its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

use irsa_api::{PodIamRole, PodIamRoleGuardrail};
use irsa_core::{admission, config::OperatorConfig, status::Outcome};

/// Everything relevant found in a set of manifests.
#[derive(Default)]
pub struct Manifests {
    pub roles: Vec<Arc<PodIamRole>>,
    pub guardrails: Vec<PodIamRoleGuardrail>,
    /// Namespace labels, by name, from Namespace manifests.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Documents that look like ours but do not parse: (where, why).
    pub errors: Vec<(String, String)>,
}

impl Manifests {
    /// Adds the YAML or JSON documents of one file. Objects of other kinds are ignored;
    /// PodIamRoles without a namespace land in `default_namespace`, as `kubectl apply -n` does.
    pub fn add(&mut self, source: &str, text: &str, default_namespace: &str) {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let place = format!("{source} (document {})", index + 1);
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => self.add_object(&place, value, default_namespace),
                Err(error) => self.errors.push((place, format!("not YAML: {error}"))),
            }
        }
    }

    fn add_object(&mut self, place: &str, value: Value, default_namespace: &str) {
        let group = value["apiVersion"].as_str().unwrap_or_default();
        let ours = group.starts_with("irsa.dev/");
        let result = match (value["kind"].as_str().unwrap_or_default(), ours) {
            ("PodIamRole", true) => serde_json::from_value::<PodIamRole>(value).map(|mut role| {
                if role.metadata.namespace.is_none() {
                    role.metadata.namespace = Some(default_namespace.to_string());
                }
                self.roles.push(Arc::new(role));
            }),
            ("PodIamRoleGuardrail", true) => {
                serde_json::from_value(value).map(|g| self.guardrails.push(g))
            }
            ("Namespace", false) if group == "v1" => serde_json::from_value::<Namespace>(value)
                .map(|ns| {
                    self.namespaces.insert(ns.name_any(), ns.labels().clone());
                }),
            _ => Ok(()),
        };
        if let Err(error) = result {
            self.errors.push((place.to_string(), error.to_string()));
        }
    }

    /// Namespaces of PodIamRoles that have no Namespace manifest: their guardrails
    /// were chosen as for a namespace without labels.
    pub fn unlabelled_namespaces(&self) -> BTreeSet<String> {
        self.roles
            .iter()
            .filter_map(|role| role.namespace())
            .filter(|namespace| !self.namespaces.contains_key(namespace))
            .collect()
    }

    /// Each PodIamRole as `namespace/name`, with the outcome that refuses it, if any:
    /// the same guardrail decision and spec validation as the reconciler.
    pub fn check(&self, config: &OperatorConfig) -> Vec<(String, Result<(), Outcome>)> {
        self.roles
            .iter()
            .map(|role| {
                let namespace = role.namespace().unwrap_or_default();
                let mut labels = self.namespaces.get(&namespace).cloned().unwrap_or_default();
                // The API server labels every namespace with its own name.
                labels.insert(NAME_LABEL.into(), namespace.clone());
                let verdict = admission::review(
                    role,
                    &self.guardrails,
                    &labels,
                    self.roles.iter().map(AsRef::as_ref),
                    config,
                )
                .map(drop);
                (format!("{namespace}/{}", role.name_any()), verdict)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::testing::test_config;

    const GUARDRAIL: &str = r#"
apiVersion: irsa.dev/v1alpha1
kind: PodIamRoleGuardrail
metadata: {name: tenants}
spec:
  namespaceSelector: {matchLabels: {tenant: "true"}}
  allowedActions: ["dynamodb:*"]
  allowedResources: ["*"]
"#;

    /// Grants namespaces `shop` and `infra` (by the label the API server sets) any action.
    const GRANT_BY_NAME: &str = r#"
apiVersion: irsa.dev/v1alpha1
kind: PodIamRoleGuardrail
metadata: {name: by-name}
spec:
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [shop, infra]}]
  allowedActions: ["*"]
  allowedResources: ["*"]
"#;

    fn role(name: &str, namespace: &str, action: &str) -> String {
        format!(
            r#"
apiVersion: irsa.dev/v1alpha1
kind: PodIamRole
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  serviceAccountName: {name}
  policy:
    Version: "2012-10-17"
    Statement: [{{Effect: Allow, Action: "{action}", Resource: "*"}}]
"#
        )
    }

    fn reasons(manifests: &Manifests) -> Vec<(String, &'static str)> {
        manifests
            .check(&test_config())
            .into_iter()
            .map(|(name, verdict)| (name, verdict.err().map_or("ok", |o| o.reason())))
            .collect()
    }

    #[test]
    fn same_verdicts_as_the_reconciler() {
        let mut manifests = Manifests::default();
        let text = [
            role("good", "shop", "dynamodb:GetItem"),
            role("star", "shop", "*"),
            role("bad-action", "shop", "dynamodb GetItem"),
        ]
        .join("---");
        manifests.add("roles.yaml", &text, "default");
        manifests.add("grant.yaml", GRANT_BY_NAME, "default");
        assert_eq!(
            reasons(&manifests),
            [
                ("shop/good".to_string(), "ok"),
                ("shop/star".to_string(), "PolicyNotAllowed"),
                ("shop/bad-action".to_string(), "InvalidSpec"),
            ]
        );
    }

    #[test]
    fn guardrails_follow_namespace_labels() {
        let mut manifests = Manifests::default();
        manifests.add("guardrail.yaml", GUARDRAIL, "default");
        manifests.add("grant.yaml", GRANT_BY_NAME, "default");
        let roles = [
            role("s3", "tenant", "s3:GetObject"),
            role("s3", "infra", "s3:GetObject"),
            role("s3", "unknown", "s3:GetObject"),
        ];
        manifests.add("roles.yaml", &roles.join("---"), "default");
        let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: tenant, labels: {tenant: \"true\"}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: infra}\n";
        manifests.add("namespaces.yaml", namespaces, "default");
        assert_eq!(
            reasons(&manifests),
            [
                ("tenant/s3".to_string(), "PolicyNotAllowed"),
                ("infra/s3".to_string(), "ok"),
                // No guardrail selects it: default deny.
                ("unknown/s3".to_string(), "PolicyNotAllowed"),
            ]
        );
        assert_eq!(
            manifests.unlabelled_namespaces(),
            BTreeSet::from(["unknown".to_string()])
        );
    }

    #[test]
    fn reports_what_does_not_parse_and_ignores_other_kinds() {
        let mut manifests = Manifests::default();
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n\
                    apiVersion: irsa.dev/v1alpha1\nkind: PodIamRole\nmetadata: {name: y}\nspec: {policy: {}}\n";
        manifests.add("mixed.yaml", text, "apps");
        assert!(manifests.roles.is_empty());
        assert_eq!(manifests.errors.len(), 1);
        assert!(manifests.errors[0].0.contains("mixed.yaml (document 2)"));
        assert!(
            manifests.errors[0].1.contains("serviceAccountName"),
            "{:?}",
            manifests.errors
        );
    }
}
