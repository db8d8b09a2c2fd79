//! `irsa-operator validate` on the manifests under tests/manifests and config/samples:
//! offline, the binary as a pull request pipeline runs it.

mod support;

use std::{process::Command, time::Duration};

use support::tools::{OPERATOR_SETTINGS as OPERATOR, output_within};

/// (exit code, stdout, stderr) of `irsa-operator validate ARGS`, with nothing from the
/// environment.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_irsa-operator"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .args(args);
    for name in [
        "IRSA_CLUSTER_NAME",
        "IRSA_ACCOUNT_ID",
        "IRSA_OIDC_ISSUER",
        "IRSA_PERMISSIONS_BOUNDARY",
    ] {
        command.env_remove(name);
    }
    let output = output_within(&mut command, "", Duration::from_secs(60));
    let stdout = String::from_utf8(output.stdout).unwrap();
    eprintln!("{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code(), stdout, stderr)
}

/// (success, stdout) of `irsa-operator validate ARGS` with the operator's settings.
fn validate(args: &[&str]) -> (bool, String) {
    let (code, stdout, _) = run(&[args, &OPERATOR].concat());
    (code == Some(0), stdout)
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

#[test]
fn the_operators_settings_are_required_and_checked_as_the_operator_checks_them() {
    let files = ["-f", "config/samples"];
    let (code, _, stderr) = run(&[&files[..], &OPERATOR[..2]].concat());
    assert_eq!(code, Some(2), "no account or issuer: a usage error");
    assert!(stderr.contains("--account-id"), "{stderr}");
    let with = |extra: &[&str]| run(&[&files[..], &OPERATOR[..], extra].concat());
    let (code, _, stderr) = run(&[
        &files[..],
        &OPERATOR[..2],
        &OPERATOR[4..],
        &["--account-id", "1234"],
    ]
    .concat());
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("`1234` is not an AWS account ID"),
        "{stderr}"
    );
    let (code, _, stderr) = with(&[
        "--permissions-boundary",
        "arn:aws:iam::444455556666:policy/boundary",
    ]);
    assert_eq!(
        code,
        Some(2),
        "a boundary in another account, as `run` refuses it"
    );
    assert!(stderr.contains("444455556666"), "{stderr}");
    let (code, stdout, _) = with(&[
        "--permissions-boundary",
        "arn:aws:iam::111122223333:policy/boundary",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
}
