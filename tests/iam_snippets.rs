//! The CloudFormation snippet for the operator's role (config/iam/cloudformation/) passes
//! cfn-lint, and its policy, resolved for a parameter set, is exactly what
//! `irsa-operator iam-policy` renders for the same cluster name, role path, partition, mode
//! and permissions boundary.

mod support;

use std::{collections::HashMap, process::Command};

use irsa_api::ProviderMode;
use irsa_core::iam_policy::{Partition, PolicyTarget, operator_policy};
use serde_json::{Map, Value};
use support::tools::{repo_root, tool};

const TEMPLATE: &str = "config/iam/cloudformation/operator-role.yaml";

/// Evaluates the intrinsic functions the template uses; `None` is `AWS::NoValue`.
struct Resolver<'a> {
    params: HashMap<&'a str, String>,
    conditions: &'a Map<String, Value>,
}

impl Resolver<'_> {
    fn string(&self, value: &Value) -> String {
        match self.resolve(value) {
            Some(Value::String(s)) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn condition(&self, name: &str) -> bool {
        let equals = self.conditions[name]["Fn::Equals"].as_array().unwrap();
        self.string(&equals[0]) == self.string(&equals[1])
    }

    fn sub(&self, template: &str, vars: &HashMap<String, String>) -> String {
        let mut out = template.to_string();
        for (name, value) in vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(self.params.iter().map(|(k, v)| (*k, v.as_str())))
        {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        assert!(!out.contains("${"), "unresolved variable in {out}");
        out
    }

    fn resolve(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().unwrap();
                match key.as_str() {
                    "Ref" if arg == "AWS::NoValue" => None,
                    "Ref" => Some(Value::String(self.params[arg.as_str().unwrap()].clone())),
                    "Fn::If" => {
                        let branches = arg.as_array().unwrap();
                        let chosen = if self.condition(branches[0].as_str().unwrap()) {
                            &branches[1]
                        } else {
                            &branches[2]
                        };
                        self.resolve(chosen)
                    }
                    "Fn::Sub" => Some(Value::String(match arg {
                        Value::String(template) => self.sub(template, &HashMap::new()),
                        Value::Array(parts) => {
                            let vars = parts[1]
                                .as_object()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| (k.clone(), self.string(v)))
                                .collect();
                            self.sub(parts[0].as_str().unwrap(), &vars)
                        }
                        other => panic!("bad Fn::Sub {other}"),
                    })),
                    _ => Some(Value::Object(self.resolve_map(map))),
                }
            }
            Value::Object(map) => Some(Value::Object(self.resolve_map(map))),
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|i| self.resolve(i)).collect(),
            )),
            other => Some(other.clone()),
        }
    }

    fn resolve_map(&self, map: &Map<String, Value>) -> Map<String, Value> {
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?)))
            .collect()
    }
}

#[test]
fn cloudformation_policy_is_the_rendered_policy() {
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(TEMPLATE)).unwrap())
            .unwrap();
    let cases = [
        ("", Partition::Aws, ProviderMode::Existing, ""),
        (
            "/teams/payments/",
            Partition::AwsUsGov,
            ProviderMode::Manage,
            "",
        ),
        ("", Partition::AwsCn, ProviderMode::Manage, ""),
        (
            "",
            Partition::Aws,
            ProviderMode::Existing,
            "arn:aws:iam::111122223333:policy/irsa-boundary",
        ),
        (
            "/teams/payments/",
            Partition::AwsUsGov,
            ProviderMode::Manage,
            "arn:aws-us-gov:iam::111122223333:policy/boundaries/irsa",
        ),
    ];
    for (role_path, partition, mode, boundary) in cases {
        let mode_name = if mode == ProviderMode::Manage {
            "manage"
        } else {
            "existing"
        };
        let resolver = Resolver {
            params: HashMap::from([
                ("ClusterName", "prod".to_string()),
                (
                    "OidcIssuerHostPath",
                    "oidc.eks.us-east-1.amazonaws.com/id/ABC".into(),
                ),
                ("RolePath", role_path.into()),
                ("OidcProviderMode", mode_name.into()),
                ("PermissionsBoundaryArn", boundary.into()),
                ("OperatorNamespace", "irsa-system".into()),
                ("OperatorServiceAccount", "irsa-operator".into()),
                ("AWS::Partition", partition.as_str().into()),
                ("AWS::AccountId", "111122223333".into()),
            ]),
            conditions: template["Conditions"].as_object().unwrap(),
        };
        let role = resolver
            .resolve(&template["Resources"]["OperatorRole"]["Properties"])
            .unwrap();
        let rendered = operator_policy(&PolicyTarget {
            cluster_name: "prod".into(),
            role_path: (!role_path.is_empty()).then(|| role_path.to_string()),
            partition,
            provider_mode: mode,
            permissions_boundary: (!boundary.is_empty()).then(|| boundary.to_string()),
        })
        .unwrap();
        assert_eq!(
            role["Policies"][0]["PolicyDocument"], rendered,
            "{role_path:?} {partition:?} {mode:?} {boundary:?}"
        );
        let trust: Value =
            serde_json::from_str(role["AssumeRolePolicyDocument"].as_str().unwrap()).unwrap();
        let condition = &trust["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            condition["oidc.eks.us-east-1.amazonaws.com/id/ABC:sub"],
            "system:serviceaccount:irsa-system:irsa-operator"
        );
        assert_eq!(
            trust["Statement"][0]["Principal"]["Federated"],
            format!(
                "arn:{}:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
                partition.as_str()
            )
        );
    }
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let lint = Command::new(tool("cfn-lint"))
        .arg(repo_root().join(TEMPLATE))
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}
