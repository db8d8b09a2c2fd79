//! The pure part of one reconcile (desired -> plan against an in-sync role), which runs
//! for every object on every resync. Prints the median time per reconcile; no assertions
//! (the machine is shared), run with `cargo bench --bench pipeline`.

use std::{collections::BTreeMap, hint::black_box, time::Instant};

use irsa_api::PodIamRoleSpec;
use irsa_core::{
    desired::{INLINE_POLICY_NAME, desired_role},
    iam_role::{ObservedRole, RoleSummary},
    ownership::Owner,
    plan::plan_apply,
    testing::test_config,
};
use serde_json::json;

const SAMPLES: usize = 31;
const ITERATIONS: usize = 2_000;

fn spec(statements: usize) -> PodIamRoleSpec {
    let statements: Vec<_> = (0..statements)
        .map(|i| {
            json!({"Sid": format!("S{i}"), "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"],
            "Resource": format!("arn:aws:dynamodb:us-east-1:111122223333:table/t{i}")})
        })
        .collect();
    PodIamRoleSpec {
        service_account_name: "payments".into(),
        policy: Some(json!({"Version": "2012-10-17", "Statement": statements})),
        tags: BTreeMap::from([("team".into(), "payments".into())]),
        ..Default::default()
    }
}

fn median_micros(statements: usize) -> f64 {
    let spec = spec(statements);
    let owner = Owner {
        cluster: "prod".into(),
        namespace: "shop".into(),
        name: "payments".into(),
        uid: "u".into(),
    };
    let config = test_config();
    let desired = desired_role(&spec, owner.clone(), &config).unwrap();
    let observed = ObservedRole {
        summary: RoleSummary {
            arn: desired.arn.clone(),
            role_id: "AROAEXAMPLE".into(),
            path: desired.path.clone(),
            trust_policy: desired.trust_policy.clone(),
            description: String::new(),
            max_session_duration: 3600,
            permissions_boundary: None,
            tags: desired.tags.clone(),
        },
        inline_policies: BTreeMap::from([(
            INLINE_POLICY_NAME.to_string(),
            desired.inline_policy.clone().unwrap(),
        )]),
        managed_policy_arns: Default::default(),
    };
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                let desired = desired_role(black_box(&spec), owner.clone(), &config).unwrap();
                let ops = plan_apply(&desired, Some(black_box(&observed))).unwrap();
                assert!(ops.is_empty());
            }
            start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn main() {
    // `cargo test --all-targets` runs this unoptimised and without `--bench`: skip, it measures nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("pipeline benchmark: run it with `cargo bench --bench pipeline`");
        return;
    }
    for statements in [1, 10, 40] {
        let size =
            irsa_core::policy::size_without_whitespace(spec(statements).policy.as_ref().unwrap());
        println!(
            "in-sync reconcile, pure part: {statements:>2} statements ({size:>5} chars): median {:.1} µs",
            median_micros(statements)
        );
    }
}
