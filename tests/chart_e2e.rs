//! The Helm chart: it lints, it renders the same RBAC rules, CRDs and alerts as `config/`,
//! its `flags` values are exactly the flags of `irsa-operator run` and the rendered arguments
//! parse, and `helm install` / `upgrade` / `uninstall` work on the test bed (no pods run
//! there; the API server validates every object, the CRDs included).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use serde_json::{Value, json};
use support::{
    install_crypto, testbed,
    tools::{
        install_monitoring_crds, kubectl, output_with_stdin, repo_root, run, tool, yaml_documents,
    },
    unique,
};

const CHART: &str = "charts/irsa-operator";
/// The chart requires the operator-wide permissions boundary.
const BOUNDARY: &str = "flags.permissions-boundary=arn:aws:iam::111122223333:policy/irsa-boundary";

fn helm(args: &[&str], kubeconfig: Option<&str>) -> String {
    let mut command = Command::new(tool("helm"));
    command.args(args).current_dir(repo_root());
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    // Helm's own notices (e.g. about kubeconfig permissions) are not failures.
    run(command, "", false)
}

/// The values that switch the pod identity webhook and restarts on.
const WEBHOOK_AND_RESTART: &[&str] = &[
    "--set",
    "flags.webhook=true",
    "--set",
    "flags.restart-workloads=true",
];

/// `render_release` with the release named as config/ names its objects.
fn render(extra: &[&str]) -> Vec<Value> {
    render_release("irsa-operator", "irsa-system", extra)
}

/// The monitoring objects switched on, plus `extra` values.
fn render_release(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--set",
        "flags.cluster-name=prod",
        "--set",
        BOUNDARY,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
    ];
    args.extend_from_slice(extra);
    yaml_documents(&helm(&args, None))
}

fn config_objects(path: &str) -> Vec<Value> {
    yaml_documents(&std::fs::read_to_string(repo_root().join(path)).unwrap())
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// The operator container's arguments.
fn operator_args(objects: &[Value]) -> Vec<String> {
    find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The value of `--flag=value` among the operator's arguments.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let prefix = format!("--{flag}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {args:?}"))
}

fn key(kind: &str, name: &str) -> (String, String) {
    (kind.to_string(), name.to_string())
}

fn by_kind_and_name(objects: &[Value]) -> BTreeMap<(String, String), Value> {
    objects
        .iter()
        .map(|o| {
            let key = key(
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            );
            (key, o.clone())
        })
        .collect()
}

/// Long flags of `irsa-operator run --help` with their environment variables.
fn run_flags() -> BTreeMap<String, Option<String>> {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name != "help" {
                flags.insert(name.clone(), None);
                current = Some(name);
            }
        }
        if let (Some(flag), Some((_, env))) = (&current, line.split_once("[env: ")) {
            let env = env.split(['=', ']']).next().unwrap().to_string();
            flags.insert(flag.clone(), Some(env));
        }
    }
    assert!(flags.len() >= 15, "the --help scan is broken: {flags:?}");
    flags
}

/// Helm writes `0.0` as `0`: compare numbers by value.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The manifests and the chart name one image, tagged with the crate's version: never `latest`.
#[test]
fn the_chart_requires_a_permissions_boundary_unless_opted_out() {
    let template = |extra: &[&str]| {
        let mut command = Command::new(tool("helm"));
        command
            .args([
                "template",
                "irsa-operator",
                CHART,
                "--set",
                "flags.cluster-name=prod",
            ])
            .args(extra)
            .current_dir(repo_root());
        output_with_stdin(command, "")
    };
    let refused = template(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("flags.permissions-boundary is required"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        template(&["--set", "withoutPermissionsBoundary=true"])
            .status
            .success()
    );
    let bounded = render(&[]);
    let deployment = bounded
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--permissions-boundary=arn:aws:iam::111122223333:policy/irsa-boundary")
            && args.contains("--allow-without-guardrail=false"),
        "{args}"
    );
}

#[test]
fn images_are_pinned_to_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart["appVersion"], version);
    assert_eq!(chart["version"], version);
    let chart = render(&[]);
    let image =
        find(&chart, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let expected = format!("ghcr.io/irsa-dev/irsa-operator:{version}");
    assert_eq!(image, expected.as_str());
    let config = config_objects("config/manager/deployment.yaml");
    assert_eq!(
        config[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        expected.as_str()
    );
    for dir in ["config", CHART] {
        let out = Command::new("grep")
            .args(["-rn", ":latest", dir])
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn chart_lints() {
    for extra in [&[][..], WEBHOOK_AND_RESTART] {
        let mut args = vec![
            "lint",
            "--strict",
            CHART,
            "--set",
            "flags.cluster-name=prod",
            "--set",
            BOUNDARY,
        ];
        args.extend_from_slice(extra);
        let out = helm(&args, None);
        assert!(out.contains("0 chart(s) failed"), "{extra:?}: {out}");
    }
}

/// The chart's RBAC objects are exactly those of the `config` files, with the same rules,
/// role references, subjects and labels.
fn assert_rbac_agrees(chart: &[Value], config_files: &[&str], count: usize) {
    let chart = by_kind_and_name(chart);
    let config = by_kind_and_name(
        &config_files
            .iter()
            .flat_map(|path| config_objects(path))
            .collect::<Vec<_>>(),
    );
    assert_eq!(config.len(), count, "{config_files:?}");
    for (key, want) in &config {
        let got = chart
            .get(key)
            .unwrap_or_else(|| panic!("the chart has no {key:?}"));
        for field in ["rules", "roleRef", "subjects"] {
            assert_eq!(got[field], want[field], "{key:?} {field}");
        }
        for (label, value) in want["metadata"]["labels"].as_object().into_iter().flatten() {
            assert_eq!(
                &got["metadata"]["labels"][label], value,
                "{key:?} label {label}"
            );
        }
    }
    let chart_roles: BTreeSet<_> = chart
        .keys()
        .filter(|(kind, _)| kind.contains("Role"))
        .collect();
    assert_eq!(chart_roles, config.keys().collect(), "RBAC objects differ");
}

#[test]
fn chart_and_config_agree_on_rbac() {
    let base = ["config/rbac/role.yaml", "config/rbac/aggregate_roles.yaml"];
    // config/'s leader Role names the Lease of its placeholder cluster name.
    let as_config = ["--set", "flags.cluster-name=change-me"];
    assert_rbac_agrees(&render(&as_config), &base, 6);
    let with_webhook_and_restart = [
        &base[..],
        &["config/webhook/rbac.yaml", "config/restart/rbac.yaml"],
    ]
    .concat();
    assert_rbac_agrees(
        &render(&[&as_config[..], WEBHOOK_AND_RESTART].concat()),
        &with_webhook_and_restart,
        12,
    );
}

/// The webhook's Service, configuration and container port are config/webhook's, and the
/// operator is told the names of the objects the chart creates, whatever the release.
#[test]
fn chart_renders_the_webhook_as_config_does() {
    let chart = render(WEBHOOK_AND_RESTART);
    let config = config_objects("config/webhook/mutating-webhook.yaml");
    let configuration = find(&chart, "MutatingWebhookConfiguration");
    assert_eq!(
        configuration["metadata"]["name"],
        config[0]["metadata"]["name"]
    );
    assert_eq!(configuration["webhooks"], config[0]["webhooks"]);
    let service = &config_objects("config/webhook/service.yaml")[0];
    let chart_by_name = by_kind_and_name(&chart);
    let service_key = key("Service", service["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        chart_by_name[&service_key]["spec"]["ports"],
        service["spec"]["ports"]
    );
    let patch = &config_objects("config/webhook/deployment-patch.yaml")[0];
    let ports = &find(&chart, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"];
    let want = &patch["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert!(ports.as_array().unwrap().contains(want), "{ports}");

    let chart = render_release(
        "edge",
        "tools",
        &[
            WEBHOOK_AND_RESTART,
            &[
                "--set",
                "flags.webhook-cert-dir=/tls",
                "--set",
                "webhook.certSecret=edge-tls",
                "--set",
                "webhook.failurePolicy=Fail",
                "--set-json",
                r#"webhook.annotations={"cert-manager.io/inject-ca-from":"tools/edge-tls"}"#,
            ],
        ]
        .concat(),
    );
    let args = operator_args(&chart);
    let service = chart
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] != "edge-irsa-operator-metrics")
        .unwrap();
    assert_eq!(arg(&args, "webhook-service"), service["metadata"]["name"]);
    assert_eq!(arg(&args, "webhook-namespace"), "tools");
    let configuration = find(&chart, "MutatingWebhookConfiguration");
    assert_eq!(
        arg(&args, "webhook-configuration"),
        configuration["metadata"]["name"]
    );
    let webhook = &configuration["webhooks"][0];
    assert_eq!(
        webhook["clientConfig"]["service"]["name"],
        service["metadata"]["name"]
    );
    assert_eq!(webhook["clientConfig"]["service"]["namespace"], "tools");
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["tools"])
    );
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "tools/edge-tls"
    );
    let roles = by_kind_and_name(&chart);
    let cluster_role = &roles[&key("ClusterRole", "edge-irsa-operator-webhook")];
    assert_eq!(
        cluster_role["rules"][0]["resourceNames"],
        serde_json::json!([arg(&args, "webhook-configuration")])
    );
    let role = &roles[&key("Role", "edge-irsa-operator-webhook")];
    assert_eq!(role["metadata"]["namespace"], "tools");
    assert_eq!(
        role["rules"][1]["resourceNames"],
        serde_json::json!([arg(&args, "webhook-ca-secret")])
    );
    // cert-manager's Secret is mounted where the operator reads it.
    assert_eq!(arg(&args, "webhook-cert-dir"), "/tls");
    let pod = &find(&chart, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        serde_json::json!([{"name": "webhook-tls", "secret": {"secretName": "edge-tls"}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": "webhook-tls", "mountPath": "/tls", "readOnly": true}])
    );
}

/// The validating webhook renders as config/components/validating-webhook has it, served
/// through the chart's one webhook Service, alone (EKS) or beside the pod identity webhook.
#[test]
fn chart_renders_the_validating_webhook_as_config_does() {
    let component = "config/components/validating-webhook";
    let config = config_objects(&format!("{component}/validating-webhook.yaml"));
    let rbac = config_objects(&format!("{component}/rbac.yaml"));
    for extra in [&[][..], &["--set", "flags.webhook=true"]] {
        let chart = render(&[&["--set", "flags.validating-webhook=true"], extra].concat());
        let args = operator_args(&chart);
        let configuration = find(&chart, "ValidatingWebhookConfiguration");
        assert_eq!(
            arg(&args, "validating-webhook-configuration"),
            configuration["metadata"]["name"]
        );
        assert_eq!(
            configuration["metadata"]["name"],
            config[0]["metadata"]["name"]
        );
        let mut want = config[0]["webhooks"].clone();
        want[0]["clientConfig"]["service"]["name"] =
            serde_json::json!(arg(&args, "webhook-service"));
        assert_eq!(configuration["webhooks"], want);
        assert_eq!(
            chart
                .iter()
                .any(|o| o["kind"] == "MutatingWebhookConfiguration"),
            !extra.is_empty()
        );
        // Its rules come after the pod identity webhook's in the chart's one ClusterRole.
        let roles = by_kind_and_name(&chart);
        let rules = roles[&key("ClusterRole", "irsa-operator-webhook")]["rules"]
            .as_array()
            .unwrap()
            .clone();
        let own = rbac[0]["rules"].as_array().unwrap().len();
        assert_eq!(
            serde_json::json!(rules[rules.len() - own..]),
            rbac[0]["rules"]
        );
        assert_eq!(
            roles[&key("Role", "irsa-operator-webhook")]["rules"],
            rbac[2]["rules"]
        );
    }
}

/// Nothing of the webhook or restarts unless asked for.
/// The chart ships config/'s ValidatingAdmissionPolicy and binding, matched on the
/// release's own ServiceAccount and naming its webhook CA Secret.
#[test]
fn chart_renders_the_confinement_policy_as_config_does() {
    let config = config_objects("config/rbac/confinement.yaml");
    let as_config = render(&[]);
    let edge = render_release("edge", "other", &[]);
    for (chart, release, namespace) in [
        (&as_config, "irsa-operator", "irsa-system"),
        (&edge, "edge-irsa-operator", "other"),
    ] {
        let policy = find(chart, "ValidatingAdmissionPolicy");
        let binding = find(chart, "ValidatingAdmissionPolicyBinding");
        let name = format!("{release}-writes");
        assert_eq!(policy["metadata"]["name"], name.as_str());
        assert_eq!(binding["metadata"]["name"], name.as_str());
        assert_eq!(binding["spec"]["policyName"], name.as_str());
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
        let want = serde_json::to_string(&config[0]["spec"])
            .unwrap()
            .replace(
                "system:serviceaccount:irsa-system:irsa-operator",
                &format!("system:serviceaccount:{namespace}:{release}"),
            )
            .replace(
                "'irsa-operator-webhook-ca'",
                &format!("'{release}-webhook-ca'"),
            );
        assert_eq!(policy["spec"].to_string(), want, "{release}");
    }
}

/// The leader Role names the Lease the operator takes for the chart's cluster name.
#[test]
fn chart_leader_role_names_the_operators_lease() {
    for cluster in ["prod", "Prod_EU", "prod-", "a_b-c"] {
        let chart = render(&["--set", &format!("flags.cluster-name={cluster}")]);
        let roles = by_kind_and_name(&chart);
        let rules = &roles[&key("Role", "irsa-operator-leader-election")]["rules"];
        assert_eq!(
            rules[1]["resourceNames"],
            json!([irsa_operator::leader::lease_name(cluster)]),
            "{cluster}"
        );
        assert_eq!(rules[1]["verbs"], json!(["get", "patch"]));
        assert_eq!(rules[0]["verbs"], json!(["create"]));
    }
}

#[test]
fn chart_renders_no_webhook_or_restart_by_default() {
    let chart = render(&[]);
    for object in &chart {
        let name = object["metadata"]["name"].as_str().unwrap();
        assert!(
            !object["kind"]
                .as_str()
                .unwrap()
                .ends_with("WebhookConfiguration")
                && !name.ends_with("-webhook")
                && !name.ends_with("-restart"),
            "{} {name} rendered by default",
            object["kind"]
        );
    }
    let ports = &find(&chart, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    let args = operator_args(&chart);
    assert_eq!(arg(&args, "webhook"), "false");
    assert_eq!(arg(&args, "validating-webhook"), "false");
    assert_eq!(arg(&args, "restart-workloads"), "false");
}

#[test]
fn chart_and_config_agree_on_crds_and_alerts() {
    let chart = render(&[]);
    let crds: Vec<&Value> = chart
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), irsa_api::crd_files().len());
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let shipped = &config_objects(&format!("crds/{name}.yaml"))[0];
        assert_eq!(
            numbers_as_floats(&crd["spec"]),
            numbers_as_floats(&shipped["spec"]),
            "{name}"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let rule = chart
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap();
    let config_rule = &config_objects("config/prometheus/prometheusrule.yaml")[0];
    assert_eq!(rule["spec"], config_rule["spec"]);
    let monitor = chart
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .unwrap();
    let config_monitor = &config_objects("config/prometheus/servicemonitor.yaml")[0];
    assert_eq!(
        monitor["spec"]["endpoints"][0]["path"],
        config_monitor["spec"]["endpoints"][0]["path"]
    );
}

#[test]
fn chart_values_cover_every_flag_and_render_valid_arguments() {
    let flags = run_flags();
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join(CHART).join("values.yaml")).unwrap(),
    )
    .unwrap();
    let value_flags: BTreeSet<&str> = values["flags"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let help_flags: BTreeSet<&str> = flags.keys().map(String::as_str).collect();
    assert_eq!(
        value_flags, help_flags,
        "values.yaml `flags` and `irsa-operator run --help` differ"
    );
    // values.schema.json rejects unknown flags (a typo would stop the operator at start).
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join(CHART).join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let schema_flags: BTreeSet<&str> = schema["properties"]["flags"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        schema_flags, help_flags,
        "values.schema.json `flags` and `irsa-operator run --help` differ"
    );

    // The operator's own parser accepts the rendered arguments (it stops at --help), with
    // the defaults and with the webhook and restarts on.
    for extra in [&[][..], WEBHOOK_AND_RESTART] {
        let mut args = operator_args(&render(extra));
        assert_eq!(args[0], "run");
        args.push("--help".into());
        let parsed = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            parsed.status.success(),
            "the operator rejects the chart's arguments {args:?}: {}",
            String::from_utf8_lossy(&parsed.stderr)
        );
    }

    // config/ sets flags through the environment: every IRSA_* variable must be a flag's.
    let envs: BTreeSet<String> = flags.values().flatten().cloned().collect();
    for path in [
        "config/manager/deployment.yaml",
        "config/components/validating-webhook/deployment-patch.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("IRSA_") {
                assert!(
                    envs.contains(word),
                    "{path} sets {word}, which no flag reads"
                );
            }
        }
    }
    let mut config_env = Vec::new();
    for dir in [
        "config/overlays/eks",
        "config/overlays/self-managed",
        "config/overlays/kind",
        "config/webhook",
        "config/restart",
    ] {
        let out = Command::new("kubectl")
            .args(["kustomize", dir])
            .current_dir(repo_root())
            .output()
            .unwrap();
        config_env.push(String::from_utf8(out.stdout).unwrap());
    }
    for word in config_env
        .concat()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
    {
        if word.starts_with("IRSA_") {
            assert!(
                envs.contains(word),
                "an overlay sets {word}, which no flag reads"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn chart_installs_upgrades_and_uninstalls_on_the_test_bed() {
    install_crypto();
    let bed = testbed().await;
    bed.install_crd().await;
    let kubeconfig = bed.vars["KUBECONFIG"].clone();
    install_monitoring_crds(&kubeconfig);
    let namespace = unique("chart");
    bed.create_namespace(&namespace).await;
    // As the docs say to label the release namespace: Pod Security warns about the Deployment otherwise.
    kubectl(
        &kubeconfig,
        &[
            "label",
            "namespace",
            &namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        "",
    );
    let release = format!("irsa-operator-{}", &namespace[6..]);
    let install = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            verb,
            &release,
            CHART,
            "--namespace",
            &namespace,
            "--set",
            "flags.cluster-name=chart",
            "--set",
            BOUNDARY,
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            // The test bed's CRDs were installed by the tests, not by a release.
            "--take-ownership",
        ];
        args.extend_from_slice(extra);
        helm(&args, Some(&kubeconfig))
    };
    let out = install("install", &[]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(!out.contains("violate PodSecurity"), "{out}");
    let listed = kubectl(
        &kubeconfig,
        &[
            "get",
            "deployment,service,serviceaccount,role,rolebinding,poddisruptionbudget,servicemonitor,prometheusrule",
            "-n",
            &namespace,
            "-o",
            "name",
        ],
        "",
    );
    for object in [
        format!("deployment.apps/{release}"),
        format!("service/{release}-metrics"),
        format!("serviceaccount/{release}"),
        format!("poddisruptionbudget.policy/{release}"),
        format!("servicemonitor.monitoring.coreos.com/{release}"),
        format!("prometheusrule.monitoring.coreos.com/{release}"),
        format!("role.rbac.authorization.k8s.io/{release}-leader-election"),
    ] {
        assert!(listed.contains(&object), "{object} missing:\n{listed}");
    }
    let policies = kubectl(
        &kubeconfig,
        &[
            "get",
            "validatingadmissionpolicy,validatingadmissionpolicybinding",
            "-o",
            "name",
        ],
        "",
    );
    for kind in [
        "validatingadmissionpolicy",
        "validatingadmissionpolicybinding",
    ] {
        let object = format!("{kind}.admissionregistration.k8s.io/{release}-writes");
        assert!(policies.contains(&object), "{object} missing:\n{policies}");
    }
    // The webhook's and restarts' objects pass the API server's validation. A dry run only:
    // a real MutatingWebhookConfiguration would see the pods of the tests running alongside.
    let mut template = vec![
        "template",
        &release,
        CHART,
        "--namespace",
        &namespace,
        "--set",
        "flags.cluster-name=chart",
        "--set",
        BOUNDARY,
    ];
    template.extend_from_slice(WEBHOOK_AND_RESTART);
    let show_only: Vec<String> = ["webhook", "rbac-webhook", "rbac-restart"]
        .iter()
        .flat_map(|file| ["--show-only".into(), format!("templates/{file}.yaml")])
        .collect();
    template.extend(show_only.iter().map(String::as_str));
    let objects = helm(&template, None);
    let applied = kubectl(
        &kubeconfig,
        &["apply", "--dry-run=server", "-f", "-"],
        &objects,
    );
    assert_eq!(yaml_documents(&objects).len(), 8, "{objects}");
    assert_eq!(applied.matches("(server dry run)").count(), 8, "{applied}");
    let out = install(
        "upgrade",
        &[
            "--set",
            "replicaCount=3",
            "--set-json",
            r#"flags.namespaces=["a","b"]"#,
        ],
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let args = kubectl(
        &kubeconfig,
        &[
            "get",
            "deployment",
            &release,
            "-n",
            &namespace,
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].args}",
        ],
        "",
    );
    assert!(
        args.starts_with("3 ") && args.contains("--namespaces=a,b"),
        "{args}"
    );

    helm(
        &["uninstall", &release, "--namespace", &namespace],
        Some(&kubeconfig),
    );
    let crds = kubectl(
        &kubeconfig,
        &["get", "crd", "podiamroles.irsa.dev", "-o", "name"],
        "",
    );
    assert!(
        crds.contains("podiamroles.irsa.dev"),
        "uninstall must keep the CRDs"
    );
    let roles = kubectl(&kubeconfig, &["get", "clusterrole", "-o", "name"], "");
    assert!(
        !roles.contains(&release),
        "uninstall leaves no ClusterRole:\n{roles}"
    );
    let policies = kubectl(
        &kubeconfig,
        &["get", "validatingadmissionpolicy", "-o", "name"],
        "",
    );
    assert!(
        !policies.contains(&release),
        "uninstall leaves no ValidatingAdmissionPolicy:\n{policies}"
    );
}
