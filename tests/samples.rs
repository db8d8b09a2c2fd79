//! The shipped samples are valid: each PodIamRole builds a role that passes the built-in
//! guardrails, and the guardrail sample parses.

use irsa_operator::{
    config::OperatorConfig,
    crd::PodIamRole,
    desired::desired_role,
    guardrail::{PodIamRoleGuardrail, evaluate},
    ownership::Owner,
};
use kube::ResourceExt;

fn sample(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/config/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn pod_iam_role_samples_build_valid_roles() {
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        partition: "aws".into(),
        account_id: "111122223333".into(),
        issuer_host_path: "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE".into(),
        role_path: "/irsa/prod/".into(),
        role_name_prefix: String::new(),
    };
    for file in ["payments.yaml", "cluster-autoscaler.yaml"] {
        let role: PodIamRole =
            serde_yaml::from_str(&sample(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let owner = Owner {
            cluster: "prod".into(),
            namespace: role.namespace().unwrap(),
            name: role.name_any(),
            uid: "uid".into(),
        };
        desired_role(&role.spec, owner, &config).unwrap_or_else(|e| panic!("{file}: {e}"));
        evaluate(&role.spec, &[], 0).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn guardrail_sample_parses() {
    let guardrail: PodIamRoleGuardrail =
        serde_yaml::from_str(&sample("guardrail-tenants.yaml")).unwrap();
    assert_eq!(guardrail.spec.max_roles_per_namespace, Some(10));
}
