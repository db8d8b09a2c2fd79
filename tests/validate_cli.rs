//! `irsa-operator validate` on the manifests under tests/manifests and config/samples:
//! offline, the binary as a pull request pipeline runs it.

use std::process::Command;

/// (success, stdout) of `irsa-operator validate ARGS --cluster-name prod`.
fn validate(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-operator"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .args(args)
        .args(["--cluster-name", "prod"])
        .env_remove("IRSA_CLUSTER_NAME")
        .output()
        .expect("run irsa-operator validate");
    let stdout = String::from_utf8(output.stdout).unwrap();
    eprintln!("{stdout}");
    (output.status.success(), stdout)
}

/// `namespace/name: Reason` of each refused PodIamRole.
fn refusals(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| !line.ends_with(": ok") && line.contains('/'))
        .map(|line| line.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": "))
        .collect()
}

#[test]
fn all_samples_pass() {
    let (ok, stdout) = validate(&["-f", "config/samples"]);
    assert!(ok);
    assert!(stdout.contains("3 PodIamRoles, 3 guardrails, 0 refused"));
}

#[test]
fn good_manifests_pass_under_the_guardrails() {
    let (ok, stdout) = validate(&[
        "-f",
        "tests/manifests/good",
        "--guardrails",
        "tests/manifests/guardrails",
        "-n",
        "tenant",
    ]);
    assert!(ok);
    assert!(stdout.contains("2 PodIamRoles, 2 guardrails, 0 refused"));
}

#[test]
fn bad_manifests_fail_with_the_status_reasons() {
    let (ok, stdout) = validate(&[
        "-f",
        "tests/manifests/bad",
        "--guardrails",
        "tests/manifests/guardrails",
        "-n",
        "shop",
    ]);
    assert!(!ok, "refusals must fail the pipeline");
    assert_eq!(
        refusals(&stdout),
        [
            "shop/builtin-admin: PolicyNotAllowed",
            "shop/builtin-assume-any: PolicyNotAllowed",
            "shop/builtin-notaction: PolicyNotAllowed",
            "shop/builtin-passrole: PolicyNotAllowed",
            "shop/builtin-star: PolicyNotAllowed",
            "shop/invalid-action: InvalidSpec",
        ]
    );
    // The line carries the status message the operator would publish.
    assert!(stdout.contains(
        "shop/builtin-star: PolicyNotAllowed: not allowed by the guardrails, nothing was written to IAM: \
         spec.policy Statement[0]: Action `*` grants `*`, denied by the built-in guardrail"
    ));
}

#[test]
fn guardrails_from_files_refuse_what_they_do_not_allow() {
    let (ok, stdout) = validate(&[
        "-f",
        "tests/manifests/bad/outside-guardrail.yaml",
        "--guardrails",
        "tests/manifests/guardrails",
        "-n",
        "tenant",
    ]);
    assert!(!ok);
    assert!(stdout.contains(
        "tenant/outside-guardrail: PolicyNotAllowed: not allowed by the guardrails, nothing was written to IAM: \
         spec.policy Statement[0]: Action `sqs:SendMessage` is not within guardrail tenants's allowedActions (dynamodb:*, s3:Get*)"
    ));
}

#[test]
fn a_namespace_no_guardrail_selects_is_refused() {
    let (ok, stdout) = validate(&["-f", "tests/manifests/good", "-n", "elsewhere"]);
    assert!(!ok);
    assert!(stdout.contains(
        "elsewhere/reader: PolicyNotAllowed: not allowed by the guardrails, nothing was written to IAM: \
         no PodIamRoleGuardrail selects namespace `elsewhere`"
    ));
    let (ok, _) = validate(&[
        "-f",
        "tests/manifests/good",
        "-n",
        "elsewhere",
        "--allow-without-guardrail",
    ]);
    assert!(ok, "the operator's insecure flag, mirrored");
}

#[test]
fn unreadable_input_fails() {
    let (ok, _) = validate(&["-f", "tests/manifests/does-not-exist"]);
    assert!(!ok);
}
