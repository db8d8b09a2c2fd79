//! End-to-end: a role whose PodIamRole was force-deleted while the operator was down is
//! reported as an orphan and, with `--delete-orphans-after`, deleted; a live role and a
//! role kept by `deletionPolicy: Retain` are not.

mod support;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{
    eventually,
    scenario::{Scenario, dynamo_spec, tags},
    sum_metric,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_role_force_deleted_while_the_operator_was_down_is_reported_then_deleted() {
    let mut s = Scenario::start("orphan").await;
    for name in ["gone", "live", "kept"] {
        s.bed.create_service_account(&s.namespace, name).await;
    }
    s.apply("gone", dynamo_spec("gone")).await;
    s.apply("live", dynamo_spec("live")).await;
    let mut retained = dynamo_spec("kept");
    retained["deletionPolicy"] = json!("Retain");
    s.apply("kept", retained).await;
    for name in ["gone", "live", "kept"] {
        s.wait_reason(name, "Synced").await;
    }
    s.delete("kept").await;
    let kept = s
        .role(&s.role_name("kept"))
        .await
        .expect("the role is kept");
    assert_eq!(
        tags(&kept).get("irsa.dev/cluster"),
        Some(&format!("released-from-{}", s.cluster))
    );

    s.operator.take().expect("operator running").stop();
    let clear_finalizers = json!({"metadata": {"finalizers": null}});
    s.roles()
        .patch(
            "gone",
            &PatchParams::default(),
            &Patch::Merge(&clear_finalizers),
        )
        .await
        .expect("remove the finalizer");
    s.roles()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    let orphan = s.role_name("gone");
    assert!(
        s.role(&orphan).await.is_some(),
        "the role outlived its PodIamRole"
    );

    // The orphan is seen at the first scan and deleted at a later one.
    s = s
        .with_operator(&["--delete-orphans-after", "1s", "--listing-interval", "2s"])
        .await;
    let operator = s.operator();
    eventually("the orphan to be reported", || async {
        let text = operator.metrics().await?;
        (sum_metric(&text, "irsa_operator_orphan_roles ", "") == 1).then_some(())
    })
    .await;
    eventually("the orphan to be deleted", || async {
        s.role(&orphan).await.is_none().then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(
        log.contains("orphaned IAM role") && log.contains(&orphan),
        "the log names the orphan"
    );
    eventually("the orphan count to drop", || async {
        let text = operator.metrics().await?;
        (sum_metric(&text, "irsa_operator_orphan_roles ", "") == 0).then_some(())
    })
    .await;

    let text = operator.metrics().await.unwrap();
    assert_eq!(
        sum_metric(&text, "irsa_operator_orphan_roles_deleted_total", ""),
        1
    );
    assert_eq!(
        operator.iam_writes().await,
        2,
        "DeleteRolePolicy and DeleteRole of the orphan, nothing else"
    );
    assert!(s.role(&s.role_name("live")).await.is_some());
    assert!(s.role(&s.role_name("kept")).await.is_some());
    s.wait_reason("live", "Synced").await;
}
