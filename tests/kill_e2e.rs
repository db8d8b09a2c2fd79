//! End-to-end: the operator is SIGKILLed at random moments while PodIamRoles are created,
//! changed and deleted. Once a last operator has converged, nothing is left behind: no
//! role without its PodIamRole (orphan), no PodIamRole stuck on its finalizer, no
//! ServiceAccount annotation that is missing, stale or left over, and every role holds the
//! policy of the latest spec.
//!
//! `IRSA_KILL_CYCLES` sets the number of kills (default 12; `scripts/soak kills` runs 200),
//! `IRSA_KILL_SEED` replays a run: the seed is printed at the start.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kube::api::DeleteParams;
use serde_json::{Value, json};
use support::{
    eventually,
    fault_proxy::{Fault, Rule},
    scenario::Scenario,
};

/// PodIamRoles the cycles pick from, each with its own ServiceAccount.
const NAMES: usize = 8;
/// Changes made before each kill.
const CHANGES_PER_CYCLE: usize = 3;
/// The longest the operator works on the changes before it is killed.
const MAX_WORK_BEFORE_KILL_MS: u64 = 1_500;

/// xorshift64*: enough to pick names and moments, and replayable from its seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The spec of PodIamRole `name` at `version`: the version is in the policy's table name,
/// so the role's policy tells which spec it was last synced to.
fn spec(name: &str, version: u64) -> Value {
    json!({"serviceAccountName": name, "policy": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["dynamodb:GetItem"],
        "Resource": format!("arn:aws:dynamodb:us-east-1:111122223333:table/{name}-v{version}")}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn random_kills_leave_no_orphan_stuck_finalizer_or_wrong_annotation() {
    let mut s = Scenario::start("kills").await;
    let cycles = env_number("IRSA_KILL_CYCLES", 12);
    let seed = env_number("IRSA_KILL_SEED", rand_seed()).max(1);
    eprintln!("{cycles} kill cycles, IRSA_KILL_SEED={seed}");
    let mut dice = Dice(seed);
    let names: Vec<String> = (0..NAMES).map(|i| format!("app-{i}")).collect();
    for name in &names {
        s.bed.create_service_account(&s.namespace, name).await;
    }

    // What should exist once everything settles: name → latest spec version.
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    let mut version = 0;
    for _ in 0..cycles {
        for _ in 0..CHANGES_PER_CYCLE {
            let name = &names[dice.below(NAMES as u64) as usize];
            version += 1;
            if live.contains_key(name) && dice.below(3) == 0 {
                s.roles()
                    .delete(name, &DeleteParams::default())
                    .await
                    .expect("delete PodIamRole");
                live.remove(name);
            } else if s
                .roles()
                .get_opt(name)
                .await
                .expect("get")
                .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
            {
                // Still being deleted: the name comes back in a later cycle.
            } else {
                s.apply(name, spec(name, version)).await;
                live.insert(name.clone(), version);
            }
        }
        let work = Duration::from_millis(dice.below(MAX_WORK_BEFORE_KILL_MS));
        tokio::time::sleep(work).await;
        s = s.with_operator(&[]).await;
    }

    for (name, version) in &live {
        s.wait_reason(name, "Synced").await;
        let role = s.role_name(name);
        let resource = &s.inline_policy(&role).await["Statement"][0]["Resource"];
        assert_eq!(
            resource,
            &json!(format!(
                "arn:aws:dynamodb:us-east-1:111122223333:table/{name}-v{version}"
            )),
            "{name} holds the policy of its latest spec"
        );
    }
    eventually("every deleted PodIamRole to be gone", || async {
        let existing: BTreeSet<String> = s
            .roles()
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        (existing == live.keys().cloned().collect()).then_some(())
    })
    .await;

    let expected_roles: BTreeSet<String> = live.keys().map(|name| s.role_name(name)).collect();
    let roles = roles_of_cluster(&s).await;
    assert_eq!(roles, expected_roles, "orphaned or missing IAM roles");
    for name in &names {
        let expected = if live.contains_key(name) {
            s.role(&s.role_name(name))
                .await
                .map(|r| r.arn().to_string())
        } else {
            None
        };
        assert_eq!(
            s.annotation(name).await,
            expected,
            "annotation of ServiceAccount {name}"
        );
    }
    eprintln!(
        "after {cycles} kills: {} PodIamRoles live, 0 orphans, 0 stuck finalizers, 0 wrong annotations",
        live.len()
    );
}

/// IAM serves a request it received even if its sender is killed right after: here the
/// CreateRole of a killed operator lands after its successor, cleaning up the deleted
/// PodIamRole, found no role. The successor must look again instead of leaving an orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_create_that_lands_after_the_kill_is_deleted_with_its_object() {
    let (s, proxy) = Scenario::prepare_behind_proxy("late-create", 5).await;
    let role = s.role_name("app");
    s.bed.create_service_account(&s.namespace, "app").await;
    proxy.set_rules(vec![
        Rule::new(Fault::Hold).action("CreateRole").role(&role),
    ]);
    let s = s.with_operator(&[]).await;
    s.apply("app", spec("app", 1)).await;
    eventually("the CreateRole to be held", || async {
        (proxy.held() == 1).then_some(())
    })
    .await;

    // Deleted while the operator waits on IAM, then killed; its successor cleans up.
    s.roles()
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete PodIamRole");
    let s = s.with_operator(&[]).await;
    eventually("the successor to find no role", || async {
        (proxy.served("GetRole") > 0).then_some(())
    })
    .await;
    // Releasing the plan lets the dead operator's CreateRole through.
    proxy.clear();
    eventually("the late CreateRole to land", || async {
        (proxy.served("CreateRole") == 1).then_some(())
    })
    .await;
    eventually("the PodIamRole to be gone", || async {
        s.roles().get_opt("app").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        s.role(&role).await.is_none(),
        "the late-created role outlived its PodIamRole"
    );
    assert_eq!(proxy.served("DeleteRole"), 1);
    assert_eq!(
        proxy.served("CreateRole"),
        1,
        "the successor created nothing"
    );
}

/// The names of the IAM roles under this scenario's cluster path.
async fn roles_of_cluster(s: &Scenario) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut pages = s
        .bed
        .iam
        .list_roles()
        .path_prefix(format!("/irsa/{}/", s.cluster))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("ListRoles");
        names.extend(page.roles().iter().map(|r| r.role_name().to_string()));
    }
    names
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
