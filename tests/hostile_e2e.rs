//! End-to-end: what a tenant can store must not stop the operator or slow the others.
//! The API server refuses documents too deep or too large for the operator to decode,
//! valid policies with every kind of condition still pass, and a hundred refused specs
//! next to a valid one cost no IAM write.

mod support;

use std::{collections::BTreeMap, time::Instant};

use futures::future::join_all;
use irsa_api::PodIamRole;
use k8s_openapi::{
    api::events::v1::Event,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    eventually, eventually_matches,
    scenario::{Scenario, dynamo_spec},
};

/// `kubectl create` of a PodIamRole, returning the API server's refusal if any. A dry run
/// is validated like the real thing but stores nothing. (Server-side apply refuses the
/// same documents, but a list where a string belongs fails earlier, with a 500.)
async fn try_create(s: &Scenario, name: &str, spec: Value, dry_run: bool) -> Result<(), String> {
    let manifest = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRole",
        "metadata": {"name": name}, "spec": spec});
    let object: PodIamRole = serde_json::from_value(manifest).expect("a PodIamRole");
    let params = PostParams {
        dry_run,
        ..PostParams::default()
    };
    s.roles()
        .create(&params, &object)
        .await
        .map(drop)
        .map_err(|error| error.to_string())
}

/// `value` wrapped in `depth` levels of `wrap`.
fn nested(depth: usize, value: Value, wrap: impl Fn(Value) -> Value) -> Value {
    (0..depth).fold(value, |inner, _| wrap(inner))
}

fn policy_with(statement: Value) -> Value {
    json!({"serviceAccountName": "app",
           "policy": {"Version": "2012-10-17", "Statement": [statement]}})
}

/// Specs the API server must refuse, with a word its error must contain.
fn undecodable_specs() -> Vec<(&'static str, Value, &'static str)> {
    let deep_list = nested(200, json!("x"), |inner| json!([inner]));
    let deep_object = nested(200, json!("x"), |inner| json!({"a": inner}));
    let statement = |field: &str, value: Value| {
        let mut statement = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"});
        statement[field] = value;
        policy_with(statement)
    };
    let many_statements: Vec<Value> = (0..5000)
        .map(|i| json!({"Sid": format!("S{i}"), "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
        .collect();
    vec![
        (
            "deep-condition",
            statement(
                "Condition",
                json!({"StringEquals": {"aws:PrincipalTag/team": deep_list.clone()}}),
            ),
            "Condition",
        ),
        ("deep-action", statement("Action", deep_list), "Action"),
        (
            "deep-resource",
            statement("Resource", deep_object),
            "Resource",
        ),
        (
            "many-statements",
            json!({"serviceAccountName": "app",
                   "policy": {"Version": "2012-10-17", "Statement": many_statements}}),
            "Statement",
        ),
        (
            "long-resource",
            statement("Resource", json!("arn:".repeat(100_000))),
            "Resource",
        ),
        (
            "many-tags",
            json!({"serviceAccountName": "app", "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
                   "tags": (0..100).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "tags",
        ),
    ]
}

/// A valid policy using what IAM conditions allow: set operators, `IfExists`, lists, and
/// booleans and numbers, JSON-typed or (as LocalStack insists) quoted.
fn conditions_spec(json_scalars: bool) -> Value {
    let (yes, hundred) = if json_scalars {
        (json!(true), json!(100))
    } else {
        (json!("true"), json!("100"))
    };
    policy_with(json!({"Sid": "Conditions", "Effect": "Allow",
    "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::team-a/*",
    "Condition": {
        "ForAllValues:StringLike": {"aws:TagKeys": ["team", "env-*"]},
        "StringEqualsIfExists": {"aws:PrincipalTag/team": "a"},
        "Bool": {"aws:SecureTransport": yes},
        "NumericLessThan": {"s3:max-keys": hundred},
        "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}
    }}))
}

/// The printer columns of one PodIamRole, as `kubectl get` shows them: readable even
/// when the object itself cannot be decoded.
async fn columns(s: &Scenario, name: &str) -> Option<BTreeMap<String, String>> {
    let url = format!(
        "/apis/irsa.dev/v1alpha1/namespaces/{}/podiamroles/{name}",
        s.namespace
    );
    let request = http::Request::get(url)
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = serde_json::from_str(&s.bed.kube.request_text(request).await.ok()?).ok()?;
    let names = table["columnDefinitions"].as_array()?.iter();
    let cells = table["rows"][0]["cells"].as_array()?.iter();
    names
        .zip(cells)
        .map(|(column, cell)| {
            let value = cell.as_str().unwrap_or_default().to_string();
            Some((column["name"].as_str()?.to_string(), value))
        })
        .collect()
}

async fn wait_undecodable_reported(s: &Scenario) {
    eventually_matches(
        "the deep object to report InvalidSpec",
        || columns(s, "deep"),
        |seen| {
            seen.as_ref().is_some_and(|columns| {
                columns.get("Ready").map(String::as_str) == Some("False")
                    && columns.get("Reason").map(String::as_str) == Some("InvalidSpec")
            })
        },
    )
    .await;
}

/// Applies the CRD with `spec.policy` free-form, as it was before the schema bounded it.
async fn install_unbounded_crd(s: &Scenario) {
    let (_, yaml) = &irsa_api::crd_files()[0];
    let mut crd: Value = serde_yaml::from_str(yaml).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["policy"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let crds: Api<CustomResourceDefinition> = Api::all(s.bed.kube.clone());
    crds.patch(
        "podiamroles.irsa.dev",
        &PatchParams::apply("irsa-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the unbounded CRD");
}

fn deep_policy_spec() -> Value {
    policy_with(
        json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": nested(200, json!("x"), |inner| json!([inner]))}}}),
    )
}

async fn assert_refused(s: &Scenario) {
    for (name, spec, field) in undecodable_specs() {
        let error = try_create(s, name, spec, true)
            .await
            .expect_err(&format!("{name} must be refused"));
        assert!(
            ["Invalid value", "Too many", "Too long", "must have at most"]
                .iter()
                .any(|word| error.contains(word))
                && error.contains(field),
            "{name}: {error}"
        );
        eprintln!("{name}: {}", &error[..error.len().min(240)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_policy_too_deep_to_decode_never_stops_the_others_before_or_after_a_restart() {
    let mut s = Scenario::start("deep").await;
    // One ServiceAccount each: a ServiceAccount has one owning PodIamRole.
    for name in ["app", "before", "next-to-deep", "after"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    s.apply("before", dynamo_spec("before")).await;
    assert_refused(&s).await;
    try_create(&s, "typed-scalars", conditions_spec(true), true)
        .await
        .expect("JSON booleans and numbers in conditions pass the schema");
    s.apply("conditions", conditions_spec(false)).await;
    s.wait_reason("before", "Synced").await;
    s.wait_reason("conditions", "Synced").await;

    // An object stored before the schema bounded policies: the API server holds it as is.
    install_unbounded_crd(&s).await;
    eventually("the unbounded schema to admit a deep policy", || async {
        // Stored, the object cannot be decoded: not even the API server's answer to create.
        let _ = try_create(&s, "deep", deep_policy_spec(), false).await;
        s.roles().get_metadata_opt("deep").await.ok()?
    })
    .await;
    s.bed.install_crd().await;
    eventually("the bounded schema to be back", || async {
        try_create(&s, "probe", deep_policy_spec(), true)
            .await
            .err()
    })
    .await;

    wait_undecodable_reported(&s).await;
    let events = Api::<Event>::namespaced(s.bed.kube.clone(), &s.namespace);
    let event = eventually("an InvalidSpec event for the deep object", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("InvalidSpec")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("deep")
        })
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("cannot decode") && note.contains("recursion limit"),
        "{note}"
    );
    s.apply("next-to-deep", dynamo_spec("next-to-deep")).await;
    s.wait_reason("next-to-deep", "Synced").await;

    // A restart lists every PodIamRole again: the deep one must not break that list.
    s = s.with_operator(&[]).await;
    s.apply("after", dynamo_spec("after")).await;
    s.wait_reason("after", "Synced").await;
    s.wait_reason("before", "Synced").await;
    wait_undecodable_reported(&s).await;
    assert_refused(&s).await;
    // Never reconciled, it has no finalizer: deleting it needs nothing from the operator.
    s.delete("deep").await;
}

/// Specs the schema admits but the operator must refuse before any IAM call.
fn hostile_spec(index: usize) -> Value {
    let statement = |action: Value, resource: Value| {
        policy_with(json!({"Effect": "Allow", "Action": action, "Resource": resource}))
    };
    match index % 10 {
        0 => statement(json!("*"), json!("*")),
        1 => statement(json!(["s3:GetObject", "iam:*"]), json!("*")),
        2 => statement(json!("iam:PassRole"), json!("*")),
        3 => statement(json!("s3:GetObject"), json!("not-an-arn")),
        4 => statement(json!("s3GetObject"), json!("*")),
        5 => {
            let mut spec = dynamo_spec("app");
            spec["audience"] = json!("sts.*");
            spec
        }
        6 => {
            let mut spec = dynamo_spec("app");
            spec["tags"] = json!({"irsa.dev/cluster": "someone-else"});
            spec
        }
        7 => policy_with(json!({"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"})),
        8 => policy_with(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"}}),
        ),
        _ => policy_with(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringEqualsMaybe": {"aws:PrincipalTag/team": "a"}}}),
        ),
    }
}

/// Writes of one PodIamRole with an inline policy: CreateRole and PutRolePolicy.
const WRITES_PER_ROLE: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_valid_role_next_to_a_hundred_hostile_ones_is_ready_and_they_write_nothing() {
    let s = Scenario::start("fair").await;
    s.bed.create_service_account(&s.namespace, "app").await;
    s.bed.create_service_account(&s.namespace, "valid").await;
    let started = Instant::now();
    s.apply("alone", dynamo_spec("app")).await;
    s.wait_reason("alone", "Synced").await;
    let alone = started.elapsed();

    // All at once: the valid one competes with the hostile ones for the same workers.
    let hostile = (0..100).map(|index| {
        let s = &s;
        async move {
            s.apply(&format!("hostile-{index}"), hostile_spec(index))
                .await
        }
    });
    let valid = async {
        let started = Instant::now();
        s.apply("valid", dynamo_spec("valid")).await;
        s.wait_reason("valid", "Synced").await;
        started.elapsed()
    };
    let (_, next_to_hostile) = futures::join!(join_all(hostile), valid);

    for index in 0..100 {
        let name = format!("hostile-{index}");
        let (_, status) = eventually(&format!("{name} to report why"), || async {
            let (generation, status) = s.status(&name).await?;
            (status.observed_generation == generation && !status.conditions.is_empty())
                .then_some((generation, status))
        })
        .await;
        let ready = &status.conditions[0];
        assert_eq!(ready.status, "False", "{name}: {ready:?}");
        assert!(
            ["InvalidSpec", "PolicyNotAllowed"].contains(&ready.reason.as_str()),
            "{name}: {ready:?}"
        );
    }
    assert_eq!(
        s.operator().iam_writes().await,
        2 * WRITES_PER_ROLE,
        "only the two valid roles were written"
    );
    eprintln!(
        "time to Ready: alone {:.2}s, next to 100 hostile PodIamRoles {:.2}s",
        alone.as_secs_f64(),
        next_to_hostile.as_secs_f64()
    );
}
