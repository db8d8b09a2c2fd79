//! What the pod identity webhook injects into a pod, as the EKS pod identity webhook does
//! (aws/amazon-eks-pod-identity-webhook, `pkg/handler`): same env names, volume, paths,
//! defaults and annotations, so a pod spec behaves the same on EKS and elsewhere. Pure.

pub mod review;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, Pod, ProjectedVolumeSource,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};

pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "eks.amazonaws.com/token-expiration";
pub const REGIONAL_STS_ANNOTATION: &str = "eks.amazonaws.com/sts-regional-endpoints";
pub const SKIP_CONTAINERS_ANNOTATION: &str = "eks.amazonaws.com/skip-containers";

pub const VOLUME_NAME: &str = "aws-iam-token";
pub const TOKEN_FILE: &str = "token";
pub const DEFAULT_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub use crate::chain::{CONFIG_KEY, CONFIG_MAP_ANNOTATION};
pub use irsa_api::{DEFAULT_AUDIENCE, ROLE_ARN_ANNOTATION};
/// The volume, mount and env that carry a role chain's AWS config file (`spec.roleChain`).
pub const CONFIG_VOLUME_NAME: &str = "irsa-aws-config";
pub const CONFIG_MOUNT_PATH: &str = "/etc/irsa/aws";
pub const CONFIG_FILE_ENV: &str = "AWS_CONFIG_FILE";
/// One day, the EKS default.
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 86_400;
/// The kubelet refuses projected tokens shorter than 10 minutes; EKS raises shorter values to it.
pub const MIN_TOKEN_EXPIRATION: i64 = 600;

/// Operator-wide injection settings (flags); ServiceAccount and pod annotations override some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionDefaults {
    pub audience: String,
    pub token_expiration: i64,
    pub mount_path: String,
    /// Sets `AWS_REGION` and `AWS_DEFAULT_REGION` when present.
    pub region: Option<String>,
    pub regional_sts: bool,
    /// Extra env vars for every injected container, e.g. `AWS_ENDPOINT_URL` for LocalStack.
    pub extra_env: Vec<(String, String)>,
}

impl Default for InjectionDefaults {
    fn default() -> Self {
        Self {
            audience: DEFAULT_AUDIENCE.into(),
            token_expiration: DEFAULT_TOKEN_EXPIRATION,
            mount_path: DEFAULT_MOUNT_PATH.into(),
            region: None,
            regional_sts: false,
            extra_env: Vec::new(),
        }
    }
}

/// The identity a ServiceAccount's annotations give its pods, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role_arn: String,
    pub audience: String,
    pub token_expiration: i64,
    pub regional_sts: bool,
    /// The ConfigMap holding the AWS config file of the ServiceAccount's role chain.
    pub aws_config: Option<String>,
}

/// The identity of a ServiceAccount with these annotations, or `None` without a role ARN.
/// An unparsable annotation falls back to the default, as EKS does.
pub fn identity(
    annotations: &BTreeMap<String, String>,
    defaults: &InjectionDefaults,
) -> Option<Identity> {
    let role_arn = annotations
        .get(ROLE_ARN_ANNOTATION)
        .filter(|arn| !arn.is_empty())?;
    Some(Identity {
        role_arn: role_arn.clone(),
        audience: annotations
            .get(AUDIENCE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| defaults.audience.clone()),
        token_expiration: expiration(annotations, defaults.token_expiration),
        regional_sts: match annotations.get(REGIONAL_STS_ANNOTATION).map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => defaults.regional_sts,
        },
        aws_config: annotations
            .get(CONFIG_MAP_ANNOTATION)
            .filter(|name| !name.is_empty())
            .cloned(),
    })
}

fn expiration(annotations: &BTreeMap<String, String>, fallback: i64) -> i64 {
    annotations
        .get(TOKEN_EXPIRATION_ANNOTATION)
        .and_then(|text| text.trim().parse::<i64>().ok())
        .map_or(fallback, |seconds| seconds.max(MIN_TOKEN_EXPIRATION))
}

/// The pod with the identity injected; equal to the input when there is nothing to add,
/// so a second admission changes nothing.
pub fn inject(pod: &Pod, identity: &Identity, defaults: &InjectionDefaults) -> Pod {
    let mut pod = pod.clone();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    // The pod annotation wins over the ServiceAccount's and the flag's.
    let token_expiration = expiration(&annotations, identity.token_expiration);
    let skipped: BTreeSet<&str> = annotations
        .get(SKIP_CONTAINERS_ANNOTATION)
        .map(|names| names.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    let token_path = token_path(
        &defaults.mount_path,
        spec.node_selector.as_ref().is_some_and(is_windows),
    );
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers.filter(|c| !skipped.contains(c.name.as_str())) {
        inject_container(container, identity, defaults, &token_path);
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == VOLUME_NAME) {
        // EKS puts its volume first.
        volumes.insert(0, token_volume(&identity.audience, token_expiration));
    }
    if let Some(config_map) = &identity.aws_config
        && !volumes.iter().any(|v| v.name == CONFIG_VOLUME_NAME)
    {
        volumes.push(Volume {
            name: CONFIG_VOLUME_NAME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    pod
}

fn is_windows(selector: &BTreeMap<String, String>) -> bool {
    ["kubernetes.io/os", "beta.kubernetes.io/os"]
        .iter()
        .any(|key| selector.get(*key).is_some_and(|os| os == "windows"))
}

/// `<mount>/token`, or `C:\<mount with backslashes>\token` on Windows nodes, as EKS writes it.
fn token_path(mount_path: &str, windows: bool) -> String {
    let path = format!("{}/{TOKEN_FILE}", mount_path.trim_end_matches('/'));
    if windows {
        format!("C:{}", path.replace('/', "\\"))
    } else {
        path
    }
}

/// Adds only what the container lacks: env it already sets is kept, and the role and
/// token file come as a pair (either one set means both are left alone), as in EKS.
fn inject_container(
    container: &mut Container,
    identity: &Identity,
    defaults: &InjectionDefaults,
    token_path: &str,
) {
    let env: &[EnvVar] = container.env.as_deref().unwrap_or_default();
    let has = |names: &[&str]| names.iter().any(|n| env.iter().any(|e| e.name == *n));
    let mut added: Vec<(&str, &str)> = Vec::new();
    if identity.regional_sts && !has(&["AWS_STS_REGIONAL_ENDPOINTS"]) {
        added.push(("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
    }
    if let Some(region) = &defaults.region
        && !has(&["AWS_REGION", "AWS_DEFAULT_REGION"])
    {
        added.push(("AWS_DEFAULT_REGION", region));
        added.push(("AWS_REGION", region));
    }
    if !has(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]) {
        added.push(("AWS_ROLE_ARN", &identity.role_arn));
        added.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token_path));
    }
    let config_file = format!("{CONFIG_MOUNT_PATH}/{CONFIG_KEY}");
    if identity.aws_config.is_some() && !has(&[CONFIG_FILE_ENV]) {
        added.push((CONFIG_FILE_ENV, &config_file));
    }
    for (name, value) in &defaults.extra_env {
        if !has(&[name]) {
            added.push((name, value));
        }
    }
    if !added.is_empty() {
        let additions: Vec<EnvVar> = added
            .into_iter()
            .map(|(name, value)| EnvVar {
                name: name.into(),
                value: Some(value.into()),
                value_from: None,
            })
            .collect();
        container.env.get_or_insert_with(Vec::new).extend(additions);
    }
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    let wanted = [
        Some((VOLUME_NAME, defaults.mount_path.as_str())),
        identity
            .aws_config
            .as_ref()
            .map(|_| (CONFIG_VOLUME_NAME, CONFIG_MOUNT_PATH)),
    ];
    for (name, path) in wanted.into_iter().flatten() {
        if !mounts.iter().any(|m| m.name == name) {
            mounts.push(VolumeMount {
                name: name.into(),
                mount_path: path.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
    }
}

fn token_volume(audience: &str, expiration: i64) -> Volume {
    Volume {
        name: VOLUME_NAME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(audience.into()),
                    expiration_seconds: Some(expiration),
                    path: TOKEN_FILE.into(),
                    ..ServiceAccountTokenProjection::default()
                }),
                ..VolumeProjection::default()
            }]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The containers of `pod` that should carry `role_arn` but lack it, the token file env
/// or the token mount (containers the pod skips do not count); or the missing volume.
pub fn lacking_identity(pod: &Pod, role_arn: &str) -> Vec<String> {
    let skipped: BTreeSet<&str> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .map(|names| names.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let value = |c: &Container, name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let mut lacking: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter(|c| !skipped.contains(c.name.as_str()))
        .filter(|c| {
            value(c, "AWS_ROLE_ARN").as_deref() != Some(role_arn)
                || value(c, "AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
                || !c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == VOLUME_NAME)
        })
        .map(|c| c.name.clone())
        .collect();
    let has_volume = spec.volumes.iter().flatten().any(|v| v.name == VOLUME_NAME);
    if !has_volume && lacking.is_empty() {
        lacking.push(format!("volume {VOLUME_NAME}"));
    }
    lacking
}

/// The JSON patch that turns `pod` into `injected`: empty when they are equal.
pub fn patch(pod: &Pod, injected: &Pod) -> json_patch::Patch {
    let before = serde_json::to_value(pod).expect("a Pod serializes");
    let after = serde_json::to_value(injected).expect("a Pod serializes");
    json_patch::diff(&before, &after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:iam::111122223333:role/irsa/prod/app";

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn identity_of(pairs: &[(&str, &str)]) -> Identity {
        identity(&annotations(pairs), &InjectionDefaults::default()).unwrap()
    }

    fn env(pod: &Pod, container: usize) -> Vec<(String, String)> {
        pod.spec.as_ref().unwrap().containers[container]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_role_annotation_no_identity() {
        let defaults = InjectionDefaults::default();
        assert_eq!(identity(&annotations(&[]), &defaults), None);
        assert_eq!(
            identity(&annotations(&[(ROLE_ARN_ANNOTATION, "")]), &defaults),
            None
        );
    }

    #[test]
    fn service_account_annotations_override_defaults() {
        assert_eq!(
            identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            Identity {
                role_arn: ARN.into(),
                audience: "sts.amazonaws.com".into(),
                token_expiration: 86_400,
                regional_sts: false,
                aws_config: None,
            }
        );
        assert_eq!(
            identity_of(&[
                (ROLE_ARN_ANNOTATION, ARN),
                (AUDIENCE_ANNOTATION, "my-aud"),
                (TOKEN_EXPIRATION_ANNOTATION, "3600"),
                (REGIONAL_STS_ANNOTATION, "true"),
            ]),
            Identity {
                role_arn: ARN.into(),
                audience: "my-aud".into(),
                token_expiration: 3600,
                regional_sts: true,
                aws_config: None,
            }
        );
        // Too short is raised to the minimum; garbage falls back to the default.
        assert_eq!(
            identity_of(&[
                (ROLE_ARN_ANNOTATION, ARN),
                (TOKEN_EXPIRATION_ANNOTATION, "60")
            ])
            .token_expiration,
            600
        );
        assert_eq!(
            identity_of(&[
                (ROLE_ARN_ANNOTATION, ARN),
                (TOKEN_EXPIRATION_ANNOTATION, "soon")
            ])
            .token_expiration,
            86_400
        );
        let regional_default = InjectionDefaults {
            regional_sts: true,
            ..InjectionDefaults::default()
        };
        let opted_out = identity(
            &annotations(&[
                (ROLE_ARN_ANNOTATION, ARN),
                (REGIONAL_STS_ANNOTATION, "false"),
            ]),
            &regional_default,
        );
        assert!(!opted_out.unwrap().regional_sts);
    }

    #[test]
    fn injects_exactly_what_eks_injects() {
        let original = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        }));
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &InjectionDefaults::default(),
        );
        assert_eq!(
            serde_json::to_value(&injected).unwrap()["spec"],
            json!({
                "containers": [{
                    "name": "app",
                    "image": "x",
                    "env": [
                        {"name": "AWS_ROLE_ARN", "value": ARN},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                         "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
                    ],
                    "volumeMounts": [{"name": "aws-iam-token", "readOnly": true,
                        "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}]
                }],
                "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{
                    "serviceAccountToken": {"audience": "sts.amazonaws.com",
                        "expirationSeconds": 86400, "path": "token"}
                }]}}]
            })
        );
    }

    #[test]
    fn region_sts_and_extra_env_in_eks_order() {
        let defaults = InjectionDefaults {
            region: Some("eu-west-1".into()),
            extra_env: pairs(&[("AWS_ENDPOINT_URL", "http://localstack:4566")]),
            ..InjectionDefaults::default()
        };
        let original = pod(json!({"spec": {"containers": [{"name": "app"}]}}));
        let identity = identity_of(&[
            (ROLE_ARN_ANNOTATION, ARN),
            (REGIONAL_STS_ANNOTATION, "true"),
        ]);
        let injected = inject(&original, &identity, &defaults);
        assert_eq!(
            env(&injected, 0),
            pairs(&[
                ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ROLE_ARN", ARN),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
                ),
                ("AWS_ENDPOINT_URL", "http://localstack:4566"),
            ])
        );
    }

    #[test]
    fn existing_env_is_kept() {
        let defaults = InjectionDefaults {
            region: Some("eu-west-1".into()),
            extra_env: pairs(&[("AWS_ENDPOINT_URL", "http://localstack:4566")]),
            ..InjectionDefaults::default()
        };
        let original = pod(json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "AWS_REGION", "value": "us-west-2"},
            {"name": "AWS_ROLE_ARN", "value": "mine"},
            {"name": "AWS_ENDPOINT_URL", "value": "http://mine"}
        ]}]}}));
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &defaults,
        );
        // The region and the role/token pair are each left alone when any of them is set.
        assert_eq!(
            env(&injected, 0),
            pairs(&[
                ("AWS_REGION", "us-west-2"),
                ("AWS_ROLE_ARN", "mine"),
                ("AWS_ENDPOINT_URL", "http://mine"),
            ])
        );
    }

    #[test]
    fn init_containers_sidecars_and_skip_list() {
        let original = pod(json!({
            "metadata": {"annotations": {SKIP_CONTAINERS_ANNOTATION: "proxy, warmup"}},
            "spec": {
                "initContainers": [{"name": "init"}, {"name": "warmup"}],
                "containers": [{"name": "app"}, {"name": "proxy"}, {"name": "sidecar"}]
            }
        }));
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &InjectionDefaults::default(),
        );
        let spec = injected.spec.unwrap();
        let mounted = |c: &Container| c.volume_mounts.is_some() && c.env.is_some();
        let init: Vec<bool> = spec.init_containers.unwrap().iter().map(mounted).collect();
        let main: Vec<bool> = spec.containers.iter().map(mounted).collect();
        assert_eq!(init, [true, false]);
        assert_eq!(main, [true, false, true]);
    }

    #[test]
    fn pod_annotation_sets_expiration_and_volume_goes_first() {
        let original = pod(json!({
            "metadata": {"annotations": {TOKEN_EXPIRATION_ANNOTATION: "7200"}},
            "spec": {"containers": [{"name": "app"}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}
        }));
        let identity = identity_of(&[
            (ROLE_ARN_ANNOTATION, ARN),
            (AUDIENCE_ANNOTATION, "custom"),
            (TOKEN_EXPIRATION_ANNOTATION, "3600"),
        ]);
        let injected = inject(&original, &identity, &InjectionDefaults::default());
        let volumes = serde_json::to_value(injected.spec.unwrap().volumes).unwrap();
        assert_eq!(volumes[0]["name"], "aws-iam-token");
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"],
            json!({"audience": "custom", "expirationSeconds": 7200, "path": "token"})
        );
        assert_eq!(volumes[1]["name"], "data");
    }

    #[test]
    fn windows_token_path() {
        let original = pod(json!({"spec": {
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "containers": [{"name": "app"}]
        }}));
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &InjectionDefaults::default(),
        );
        assert_eq!(
            env(&injected, 0)[1].1,
            r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token"
        );
    }

    #[test]
    fn second_admission_is_a_no_op_and_patch_applies() {
        let original = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "init"}],
                     "containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}
        }));
        let defaults = InjectionDefaults {
            region: Some("us-east-1".into()),
            ..InjectionDefaults::default()
        };
        let identity = identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]);
        let injected = inject(&original, &identity, &defaults);
        let patch = patch(&original, &injected);
        assert!(!patch.0.is_empty());
        let mut patched = serde_json::to_value(&original).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(patched, serde_json::to_value(&injected).unwrap());
        let again = inject(&injected, &identity, &defaults);
        assert!(super::patch(&injected, &again).0.is_empty());
    }

    #[test]
    fn a_role_chain_config_is_mounted_and_named_once() {
        let original = pod(json!({
            "metadata": {"name": "p", "annotations": {SKIP_CONTAINERS_ANNOTATION: "tool"}},
            "spec": {"containers": [{"name": "app"}, {"name": "tool"},
                {"name": "own", "env": [{"name": "AWS_CONFIG_FILE", "value": "/mine"}]}]}
        }));
        let defaults = InjectionDefaults::default();
        let identity = identity_of(&[
            (ROLE_ARN_ANNOTATION, ARN),
            (CONFIG_MAP_ANNOTATION, "app-aws-config"),
        ]);
        assert_eq!(identity.aws_config.as_deref(), Some("app-aws-config"));
        let injected = inject(&original, &identity, &defaults);
        let spec = injected.spec.as_ref().unwrap();
        let volumes = serde_json::to_value(&spec.volumes).unwrap();
        assert_eq!(
            volumes[1],
            json!({"name": "irsa-aws-config",
            "configMap": {"name": "app-aws-config"}})
        );
        assert_eq!(volumes.as_array().unwrap().len(), 2);
        assert!(
            env(&injected, 0).contains(&("AWS_CONFIG_FILE".into(), "/etc/irsa/aws/config".into()))
        );
        let mounts = serde_json::to_value(&spec.containers[0].volume_mounts).unwrap();
        assert_eq!(
            mounts[1],
            json!({"name": "irsa-aws-config", "mountPath": "/etc/irsa/aws",
            "readOnly": true})
        );
        assert!(
            env(&injected, 1).is_empty(),
            "skipped containers get nothing"
        );
        assert!(
            env(&injected, 2).contains(&("AWS_CONFIG_FILE".into(), "/mine".into())),
            "a container's own file is kept"
        );
        assert!(
            !env(&injected, 2).contains(&("AWS_CONFIG_FILE".into(), "/etc/irsa/aws/config".into()))
        );
        // A second admission adds nothing.
        let again = inject(&injected, &identity, &defaults);
        assert!(patch(&injected, &again).0.is_empty());
        // Without the annotation, nothing of it.
        let plain = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &defaults,
        );
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("irsa-aws-config")
        );
    }

    #[test]
    fn lacking_identity_names_the_containers() {
        let defaults = InjectionDefaults::default();
        let original = pod(json!({
            "metadata": {"annotations": {SKIP_CONTAINERS_ANNOTATION: "tool"}},
            "spec": {"containers": [{"name": "app"}, {"name": "tool"}]}
        }));
        assert_eq!(lacking_identity(&original, ARN), ["app"]);
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &defaults,
        );
        assert!(lacking_identity(&injected, ARN).is_empty());
        assert_eq!(lacking_identity(&injected, "arn:new"), ["app"]);
        let mut no_volume = injected.clone();
        no_volume.spec.as_mut().unwrap().volumes = None;
        assert_eq!(lacking_identity(&no_volume, ARN), ["volume aws-iam-token"]);
    }

    #[test]
    fn skipped_container_is_untouched() {
        let original = pod(
            json!({"metadata": {"annotations": {SKIP_CONTAINERS_ANNOTATION: "app"}},
            "spec": {"containers": [{"name": "app"}]}}),
        );
        let injected = inject(
            &original,
            &identity_of(&[(ROLE_ARN_ANNOTATION, ARN)]),
            &InjectionDefaults::default(),
        );
        let app = &injected.spec.unwrap().containers[0];
        assert_eq!(
            (app.env.is_none(), app.volume_mounts.is_none()),
            (true, true)
        );
    }
}
